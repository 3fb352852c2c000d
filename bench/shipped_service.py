"""Item 1 (issue 14): ``servermode serve`` as shipped, against uvicorn serving the same app.

Every server serves the bare app of ``bench.served`` (``GET /profiles/1``, a counted category
in production) on uvicorn's own choice of stack (``auto``: httptools and uvloop when
installed, as ``servermode serve`` gets them), one worker, its logs to a file:

- ``uvicorn APP --no-access-log`` (the baseline) and the same again (an A/A row);
- ``uvicorn APP`` with its own access log (uvicorn's formatter, log level info);
- the composition ``servermode serve`` builds (gate, admin dispatch, admin routes), under
  ``uvicorn --factory ... --no-access-log``: what the gate costs without the command;
- ``servermode serve --app APP`` in its variants (:data:`SERVE_CASES`).

Fresh servers each round, in alternating order (see ``http_overhead``). Targets: the service
without an access log keeps >= 0.97 of ``uvicorn APP --no-access-log``, and of the same
composition under uvicorn (the command's own cost); with its access log on, it loses less
to the access log than uvicorn does to its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from .apps import PROFILE_PATH
from .harness import Options, Report
from .loadgen import (
    Served,
    fresh_servers_per_round,
    load,
    load_generator,
    run_seconds,
    run_with_load_generator,
    servermode_serve,
    uvicorn_app,
    uvicorn_factory,
)

TARGET_RATIO = 0.97
CONNECTIONS = 16
APP = "bench.served:app"

UVICORN = "uvicorn APP --no-access-log"
UVICORN_AGAIN = "uvicorn APP --no-access-log, again"
UVICORN_LOGGED = "uvicorn APP (access log)"
COMPOSED = "uvicorn, serve's composition, --no-access-log"
SERVE_QUIET = "servermode serve --no-access-log"
SERVE_LOGGED = "servermode serve (access log)"

#: ``servermode serve`` variants: name -> options.
SERVE_CASES: dict[str, tuple[str, ...]] = {
    SERVE_QUIET: ("--no-access-log",),
    SERVE_LOGGED: (),
}


def servers() -> dict[str, Served]:
    return {
        UVICORN: uvicorn_app(APP),
        UVICORN_AGAIN: uvicorn_app(APP),
        UVICORN_LOGGED: uvicorn_app(APP, access_log=True),
        COMPOSED: uvicorn_factory("bench.apps:service_server", None, access_log=False),
        **{name: servermode_serve(APP, *options) for name, options in SERVE_CASES.items()},
    }


def measure(options: Options, generator_choice: str = "auto") -> Report:
    generator = load_generator(generator_choice)
    seconds, rounds, warmup = (0.5, 1, 0) if options.quick else (2.0, 12, 1)
    seconds = run_seconds(generator, seconds)
    report = Report(
        "shipped_service",
        options.quick,
        {
            "load_generator": generator,
            "connections": CONNECTIONS,
            "seconds_per_run": seconds,
            "rounds": rounds,
        },
    )
    measured = fresh_servers_per_round(
        servers(),
        PROFILE_PATH,
        lambda _, url: load(
            generator, url + PROFILE_PATH, connections=CONNECTIONS, seconds=seconds
        ),
        rounds,
        warmup=warmup,
    )

    def ratio(name: str, against: str = UVICORN) -> float:
        return measured.rate_ratio(name, against)

    rows = []
    for name, rate, low, high, cpu in measured.rows():
        report.figure(f"{name} requests/s", rate)
        report.figure(f"{name} server CPU us/request", cpu)
        by_cpu = measured.cpu_ratio(name, UVICORN)
        report.figure(f"{name} / uvicorn APP by CPU", by_cpu)
        rows.append((name, rate, low, high, ratio(name), cpu, by_cpu))
    report.table(
        f"GET {PROFILE_PATH}, {generator}, {CONNECTIONS} connections, {seconds:g} s per run "
        f"(median over rounds; ratios: medians of per-round ratios)",
        ("server", "requests/s", "min", "max", "x uvicorn APP", "CPU us/req", "x by CPU"),
        rows,
    )
    report.figure("A/A: uvicorn APP again / uvicorn APP", ratio(UVICORN_AGAIN))
    report.check(
        "serve --no-access-log / uvicorn APP --no-access-log",
        report.figure("serve quiet / uvicorn APP", ratio(SERVE_QUIET)),
        TARGET_RATIO,
        at_most=False,
    )
    report.check(
        "serve --no-access-log / the same composition under uvicorn",
        report.figure("serve quiet / composition under uvicorn", ratio(SERVE_QUIET, COMPOSED)),
        TARGET_RATIO,
        at_most=False,
    )
    # What each access log costs: 1 - (logged / quiet) of the same server.
    uvicorn_cost = 1 - ratio(UVICORN_LOGGED)
    serve_cost = 1 - ratio(SERVE_LOGGED, SERVE_QUIET)
    report.figure("uvicorn's access log: share of throughput lost", uvicorn_cost)
    report.figure("servermode's access log: share of throughput lost", serve_cost)
    # The same by the servers' CPU time per request (steadier on a shared machine).
    uvicorn_cpu = 1 - measured.cpu_ratio(UVICORN_LOGGED, UVICORN)
    serve_cpu = 1 - measured.cpu_ratio(SERVE_LOGGED, SERVE_QUIET)
    report.figure("uvicorn's access log: share lost, by CPU", uvicorn_cpu)
    report.figure("servermode's access log: share lost, by CPU", serve_cpu)
    report.figure("serve quiet / uvicorn APP by CPU", measured.cpu_ratio(SERVE_QUIET, UVICORN))
    report.figure(
        "serve quiet / composition under uvicorn by CPU", measured.cpu_ratio(SERVE_QUIET, COMPOSED)
    )
    report.check(
        "servermode's access log cost / uvicorn's",
        report.figure("access log cost, servermode / uvicorn", serve_cost / uvicorn_cost),
        1.0,
        at_most=True,
    )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    run_with_load_generator(measure, __doc__, argv)


if __name__ == "__main__":
    main()
