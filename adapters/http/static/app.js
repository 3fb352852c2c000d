// servermode admin page: live status from GET /server/events, switches through the HTTP API.
//
// The token is typed once and kept in this tab's sessionStorage; it goes out only as an
// Authorization header (no cookie, so no cross-site request forgery surface; never in a URL).
// EventSource cannot send headers, so the event stream is read with fetch() and a stream reader.
'use strict';

(() => {
  const TOKEN_KEY = 'servermode.token';
  const RECONNECT_MS = 1000;
  const HISTORY_SHOWN = 10;

  const $ = (id) => document.getElementById(id);
  const view = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    status: null, // the last status document (GET /server/status's)
    statusAt: 0, // performance.now() when it arrived
    canSwitch: false,
    switchRefusal: 'not connected yet',
    switching: false, // a POST /server/mode from this page is under way
    cancelling: false,
    pending: null, // the action waiting for its confirmation
    records: new Map(), // transition records by id (or time, for unsaved ones)
    stream: null, // the AbortController of the open stream
    ticker: 0,
    shownState: null, // the state the diagram shows
  };

  // -- talking to the service --------------------------------------------------------------

  function headers(extra) {
    const result = Object.assign({}, extra);
    if (view.token) result.Authorization = 'Bearer ' + view.token;
    return result;
  }

  async function problemOf(response) {
    try {
      const body = await response.json();
      if (body && typeof body.description === 'string') return body.description;
    } catch (ignored) {
      // not the error body: say what the status was
    }
    return 'HTTP ' + response.status;
  }

  async function connect() {
    if (view.stream) view.stream.abort();
    const control = new AbortController();
    view.stream = control;
    setConnection(view.status ? 'reconnecting' : 'connecting');
    try {
      const response = await fetch('events', {
        headers: headers({ Accept: 'text/event-stream' }),
        cache: 'no-store',
        signal: control.signal,
      });
      if (response.status === 401 || response.status === 403) {
        tokenRefused(await problemOf(response));
        return; // no retry: the same token would be refused again
      }
      if (!response.ok || !response.body) throw new Error(await problemOf(response));
      setConnection('live');
      loadHistory();
      await readEvents(response.body, onEvent);
      setConnection('reconnecting');
    } catch (error) {
      if (control.signal.aborted) return;
      setConnection('reconnecting');
    }
    if (view.stream === control) setTimeout(() => { if (view.stream === control) connect(); }, RECONNECT_MS);
  }

  // Server-sent events, parsed as the HTML standard says: fields up to a blank line.
  async function readEvents(body, handle) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (!line || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? '' : line.slice(colon + 1);
          if (text.startsWith(' ')) text = text.slice(1);
          if (field === 'event') name = text;
          else if (field === 'data') data.push(text);
        }
        if (data.length) handle(name, JSON.parse(data.join('\n')));
      }
    }
  }

  function onEvent(name, data) {
    if (name === 'hello') {
      view.canSwitch = data.can_switch;
      view.switchRefusal = data.switch;
      $('forget-token').hidden = !view.token;
      $('token-form').hidden = data.can_switch || Boolean(view.token);
      if (!view.token && !data.can_switch) {
        $('token-why').textContent = 'Reading needs no token here; enter the admin token to change the mode.';
      } else if (!data.can_switch && data.principal === 'reader') {
        say('This token may read but not change the mode: ' + data.switch + '.', 'info');
      } else if (!data.can_switch) {
        // Reading is open here, so only the switch tells the token is wrong.
        say('The token was refused: ' + data.switch + '. It cannot change the mode.', 'error');
        $('token-why').textContent = 'The token was refused: ' + data.switch + '.';
        $('token-form').hidden = false;
      }
      renderControls();
    } else if (name === 'status') {
      view.status = data;
      view.statusAt = performance.now();
      renderStatus();
    } else if (name === 'transition') {
      addRecords([data]);
    } else if (name === 'shutdown') {
      setConnection('stopping');
    }
  }

  async function loadHistory() {
    try {
      const response = await fetch('transitions?limit=' + HISTORY_SHOWN, { headers: headers(), cache: 'no-store' });
      if (response.ok) addRecords((await response.json()).transitions);
    } catch (ignored) {
      // the stream brings the next records anyway
    }
  }

  async function post(path, body) {
    return fetch(path, {
      method: 'POST',
      headers: headers({ 'Content-Type': 'application/json' }),
      body: JSON.stringify(body),
      cache: 'no-store',
    });
  }

  async function switchMode(target, reason) {
    view.switching = true;
    renderControls();
    say('Switching to ' + target + '…', 'info');
    try {
      const response = await post('mode', { mode: target, reason: reason });
      if (response.ok) {
        const outcome = response.headers.get('Servermode-Outcome') || 'completed';
        say('Switched to ' + (await response.json())['server changed'] + ' (' + outcome + ').', 'ok');
        $('reason').value = '';
      } else {
        refusedAction(response.status, await problemOf(response));
      }
    } catch (error) {
      say('The switch request failed: ' + error.message + '. The status above shows what happened.', 'error');
    } finally {
      view.switching = false;
      renderControls();
    }
  }

  async function cancelDrain(reason) {
    view.cancelling = true;
    renderControls();
    try {
      const response = await post('cancel', { reason: reason || null });
      if (response.ok) {
        const record = await response.json();
        say('Drain ended: ' + record.outcome + '; the server is in ' + modeOf(record.to_state) + ' mode.', 'ok');
      } else {
        refusedAction(response.status, await problemOf(response));
      }
    } catch (error) {
      say('The cancel request failed: ' + error.message, 'error');
    } finally {
      view.cancelling = false;
      renderControls();
    }
  }

  function refusedAction(status, description) {
    say(description, 'error');
    if (status === 401 || status === 403) {
      view.canSwitch = false;
      view.switchRefusal = description;
      renderControls();
    }
  }

  // -- the token ---------------------------------------------------------------------------

  function tokenRefused(description) {
    setConnection('refused');
    view.canSwitch = false;
    view.switchRefusal = description;
    say('The token was refused: ' + description + '. Nothing can be shown or changed with it.', 'error');
    $('token-why').textContent = view.token ? 'The token was refused: ' + description + '.' : 'This service asks for a bearer token.';
    $('token-form').hidden = false;
    $('forget-token').hidden = !view.token;
    renderControls();
    $('token').focus();
  }

  function useToken(token) {
    view.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $('token').value = '';
    $('token-form').hidden = true;
    say('', null);
    connect();
  }

  // -- rendering ---------------------------------------------------------------------------

  function say(text, kind) {
    const box = $('message');
    box.textContent = text;
    box.hidden = !text;
    box.dataset.kind = kind || '';
  }

  function setConnection(state) {
    const pill = $('connection');
    pill.dataset.connection = state;
    pill.textContent = { live: 'live', refused: 'token refused', stopping: 'service stopping' }[state] || state;
  }

  function modeOf(state) {
    return state.startsWith('draining_to_') ? (state.endsWith('maintenance') ? 'production' : 'maintenance') : state;
  }

  function time(iso) {
    if (!iso) return 'unknown';
    const at = new Date(iso);
    return at.toLocaleString([], { hour12: false });
  }

  function renderStatus() {
    const status = view.status;
    const mode = $('mode');
    mode.textContent = status.mode;
    mode.dataset.mode = status.mode;
    mode.toggleAttribute('data-draining', Boolean(status.target));
    $('state').textContent = status.state;
    $('since').textContent = time(status.since);
    $('policy').textContent = status.drain_timeout + ' s, then ' + status.timeout_policy;
    renderInFlight(status.in_flight);
    renderDiagram(status.state, status.target);
    renderDrain();
    renderControls();
  }

  function renderInFlight(inFlight) {
    const body = $('in-flight').tBodies[0];
    body.replaceChildren(...Object.entries(inFlight).map(([category, n]) => {
      const row = document.createElement('tr');
      row.dataset.category = category;
      row.append(cell(category), cell(String(n), n > 0 ? 'busy' : ''));
      return row;
    }));
  }

  function renderDiagram(state, target) {
    let current = null;
    for (const box of document.querySelectorAll('.sm-state')) {
      box.classList.toggle('current', box.dataset.state === state);
      box.classList.toggle('target', Boolean(target) && box.dataset.state === target);
      if (box.dataset.state === state) current = box;
    }
    for (const arrow of document.querySelectorAll('.sm-edge')) {
      arrow.classList.toggle('possible', arrow.dataset.from === state);
    }
    // On a narrow screen the diagram scrolls sideways: bring a new current state into view.
    const frame = document.querySelector('.diagram');
    if (current && state !== view.shownState && frame.scrollWidth > frame.clientWidth) {
      const box = current.getBoundingClientRect();
      const seen = frame.getBoundingClientRect();
      frame.scrollLeft += box.left + box.width / 2 - (seen.left + seen.width / 2);
    }
    view.shownState = state;
  }

  function timeLeftMs() {
    const status = view.status;
    const left = Date.parse(status.deadline) - Date.parse(status.system_time);
    return Math.max(0, left - (performance.now() - view.statusAt));
  }

  function renderDrain() {
    const status = view.status;
    const draining = Boolean(status && status.target);
    $('drain').hidden = !draining;
    if (!draining) {
      clearInterval(view.ticker);
      view.ticker = 0;
      return;
    }
    const left = timeLeftMs();
    const total = status.drain_timeout * 1000;
    $('drain-target').textContent = status.target;
    $('time-left').textContent = (left / 1000).toFixed(1) + ' s';
    $('drain-progress').value = total > 0 ? Math.min(1, 1 - left / total) : 1;
    const running = Object.entries(status.in_flight).filter(([, n]) => n > 0);
    $('drain-running').textContent = running.length
      ? running.map(([category, n]) => n + ' ' + category).join(', ')
      : 'nothing';
    $('deadline').textContent = time(status.deadline);
    if (!view.ticker) view.ticker = setInterval(renderDrain, 200);
  }

  function renderControls() {
    const status = view.status;
    const draining = Boolean(status && status.target);
    const target = status && (status.mode === 'production' ? 'maintenance' : 'production');
    const may = view.canSwitch && Boolean(status);
    $('switch').textContent = target ? 'Switch to ' + target + '…' : 'Switch mode';
    $('switch').disabled = !may || draining || view.switching || view.pending !== null;
    $('reason').disabled = !may || view.switching;
    $('cancel-drain').disabled = !may || !draining || view.cancelling;
    let note = '';
    if (!view.canSwitch) note = 'Controls disabled: ' + view.switchRefusal + '.';
    else if (draining) note = 'A switch is under way: it can be cancelled until its drain ends.';
    $('controls-note').textContent = note;
    if (!may && view.pending) closeConfirm();
  }

  function addRecords(records) {
    for (const record of records) view.records.set(record.id != null ? 'id' + record.id : 'at' + record.at, record);
    const newest = [...view.records.values()]
      .sort((a, b) => (b.at < a.at ? -1 : b.at > a.at ? 1 : (b.id || 0) - (a.id || 0)))
      .slice(0, HISTORY_SHOWN);
    view.records = new Map(newest.map((r) => [r.id != null ? 'id' + r.id : 'at' + r.at, r]));
    $('transitions').tBodies[0].replaceChildren(...newest.map((r) => {
      const row = document.createElement('tr');
      const outcome = cell(r.outcome);
      outcome.dataset.outcome = r.outcome;
      row.append(cell(time(r.at)), cell(r.from_state), cell(r.to_state), outcome, cell(r.actor || ''), cell(r.reason || '', 'reason'));
      return row;
    }));
  }

  function cell(text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  // -- the confirmation step ---------------------------------------------------------------

  function openConfirm(action) {
    view.pending = action;
    const status = view.status;
    if (action.kind === 'switch') {
      $('confirm-text').textContent =
        'Switch from ' + status.mode + ' to ' + action.target + '? Requests that ' + action.target +
        ' mode refuses get 503 from now on; the running ones get up to ' + status.drain_timeout +
        ' s to finish (then: ' + status.timeout_policy + '). Reason: “' + action.reason + '”';
      $('confirm-yes').textContent = 'Switch to ' + action.target;
    } else {
      $('confirm-text').textContent =
        'Cancel the switch to ' + status.target + '? The server stays in ' + status.mode + ' mode.';
      $('confirm-yes').textContent = 'Cancel the drain';
    }
    $('confirm').hidden = false;
    renderControls();
    $('confirm-yes').focus();
  }

  function closeConfirm() {
    view.pending = null;
    $('confirm').hidden = true;
    renderControls();
  }

  function confirmed() {
    const action = view.pending;
    closeConfirm();
    if (!action) return;
    if (action.kind === 'switch') switchMode(action.target, action.reason);
    else cancelDrain(action.reason);
  }

  // -- start -------------------------------------------------------------------------------

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    useToken($('token').value.trim());
  });
  $('forget-token').addEventListener('click', () => useToken(''));
  $('switch-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const status = view.status;
    if (!status) return;
    const target = status.mode === 'production' ? 'maintenance' : 'production';
    openConfirm({ kind: 'switch', target: target, reason: $('reason').value.trim() });
  });
  $('cancel-drain').addEventListener('click', () => openConfirm({ kind: 'cancel', reason: $('reason').value.trim() }));
  $('confirm-yes').addEventListener('click', confirmed);
  $('confirm-no').addEventListener('click', closeConfirm);

  connect();
})();
