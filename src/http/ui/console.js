// tenant-migrator console: a page over the service's own API, with no build step and no
// dependency. The token from sign-in lives in `session` only (never in storage or a cookie):
// it goes with the tab, and the page signs out when it expires. The API enforces roles; the
// page only leaves out what a role cannot do. Every text from the server is put in the page
// as text (`textContent`), never as markup.

const RANK = { viewer: 1, operator: 2, admin: 3 };
const PAGE = 50;
const SEARCH = /^[a-z0-9_]{1,63}$/;
const FAILED_OUTCOMES = new Set(['failed', 'dirty', 'checksum_mismatch', 'missing', 'foreign']);

const session = { token: null, email: null, role: null, timer: null };
let viewAbort = new AbortController();

const $ = (id) => document.getElementById(id);
const can = (role) => session.role !== null && RANK[session.role] >= RANK[role];

// --- building the page ---------------------------------------------------------------------

/** An element: `attrs` are attributes (functions under `on…` become listeners); children
 *  are nodes or strings (as text); null, false and undefined are skipped; arrays flatten. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  const add = (c) => {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) c.forEach(add);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  };
  children.forEach(add);
  return el;
}

/** Replaces `el`'s children with `nodes`, leaving out null, false and undefined (which
 *  `replaceChildren` would print as words). */
function fill(el, ...nodes) {
  el.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

function announce(text) {
  const a = $('announce');
  a.textContent = '';
  // A change the screen reader hears even when the text repeats.
  requestAnimationFrame(() => { a.textContent = text; });
}

const number = (n) => (n ?? 0).toLocaleString('en');
const version = (v) => (v === null || v === undefined ? 'none' : `v${v}`);

function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

const TONES = {
  active: 'ok', succeeded: 'ok', migrated: 'ok', created: 'ok', up_to_date: 'ok', applied: 'ok',
  exists: 'ok', ok: 'ok',
  provisioning: 'warn', running: 'warn', queued: 'warn', planned: 'warn', cancelled: 'warn',
  interrupted: 'warn', skipped: 'neutral', not_attempted: 'neutral', archived: 'neutral',
};

/** A state in words, coloured by tone (colour is never the only sign). */
function pill(state) {
  const tone = FAILED_OUTCOMES.has(state) || state === 'failed' ? 'bad' : (TONES[state] || 'neutral');
  return h('span', { class: `pill ${tone}` }, String(state).replaceAll('_', ' '));
}

/** Column headers: a label, or `[label, class]`. */
function thead(headers) {
  return h('thead', {}, h('tr', {}, headers.map((x) => {
    const [label, cls] = Array.isArray(x) ? x : [x, null];
    return h('th', { scope: 'col', class: cls }, label);
  })));
}

function table(caption, headers, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h('table', {}, h('caption', {}, caption), thead(headers), h('tbody', {}, rows));
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err));
}

/** Replaces the view with `nodes`, and moves focus to its heading (for keyboard and screen
 *  reader users, a new view starts at its top). */
function render(...nodes) {
  const view = $('view');
  fill(view, ...nodes);
  const heading = view.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}

/** A modal question with Cancel focused first; resolves true for Confirm. */
function confirmAction(title, text, okLabel) {
  const dialog = $('confirm');
  const back = document.activeElement;
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      $('confirm-ok').removeEventListener('click', ok);
      $('confirm-cancel').removeEventListener('click', no);
      dialog.removeEventListener('cancel', no);
      if (dialog.open) dialog.close();
      if (back && back.isConnected) back.focus();
      resolve(answer);
    };
    const ok = () => done(true);
    const no = (e) => { if (e) e.preventDefault(); done(false); };
    $('confirm-ok').addEventListener('click', ok);
    $('confirm-cancel').addEventListener('click', no);
    dialog.addEventListener('cancel', no);
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}

// --- talking to the API --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, problem) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body, signal) {
  const headers = { Accept: 'application/json' };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, cache: 'no-store', signal: signal || viewAbort.signal,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (res.status === 401 && session.token) {
    signOut('Your session ended (the token expired or is no longer valid). Sign in again.');
    throw new ApiError(401, 'signed out', data);
  }
  if (!res.ok) {
    const why = (data && (data.detail || data.title)) || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, `${why} (HTTP ${res.status})`, data);
  }
  return data;
}

/** Reads a server-sent event stream with the token in the header (an `EventSource` cannot
 *  send one), calling `onEvent(name, data)` for each event; resolves when the stream ends. */
async function follow(path, signal, onEvent) {
  const res = await fetch(path, {
    headers: { Accept: 'text/event-stream', Authorization: `Bearer ${session.token}` },
    cache: 'no-store', signal,
  });
  if (res.status === 401) {
    signOut('Your session ended (the token expired or is no longer valid). Sign in again.');
    throw new ApiError(401, 'signed out', null);
  }
  if (!res.ok || !res.body) throw new ApiError(res.status, `the event stream answered HTTP ${res.status}`, null);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let m = buffer.match(/\r?\n\r?\n/); m; m = buffer.match(/\r?\n\r?\n/)) {
      const block = buffer.slice(0, m.index);
      buffer = buffer.slice(m.index + m[0].length);
      let name = 'message';
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(':')) continue;
        const at = line.indexOf(':');
        const field = at < 0 ? line : line.slice(0, at);
        const val = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
        if (field === 'event') name = val;
        else if (field === 'data') data.push(val);
      }
      if (data.length) {
        let parsed = null;
        try { parsed = JSON.parse(data.join('\n')); } catch { parsed = null; }
        onEvent(name, parsed);
      }
    }
  }
}

// --- signing in and out --------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const email = $('email').value.trim();
  const password = $('password').value;
  const err = $('sign-in-error');
  err.hidden = true;
  if (!email || !password) {
    err.textContent = 'Enter your e-mail and password.';
    err.hidden = false;
    return;
  }
  $('sign-in-submit').disabled = true;
  try {
    const res = await fetch('/auth/login', {
      method: 'POST', cache: 'no-store',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      throw new Error(res.status === 401
        ? 'Wrong e-mail or password.'
        : (data && (data.detail || data.title)) || `Sign-in failed (HTTP ${res.status}).`);
    }
    session.token = data.access_token;
    const me = await api('GET', '/auth/me', undefined, new AbortController().signal);
    session.email = me.email;
    session.role = me.role;
    clearTimeout(session.timer);
    session.timer = setTimeout(
      () => signOut('Your session expired. Sign in again.'),
      Math.max(0, data.expires_in * 1000 - 1000));
    $('password').value = '';
    $('sign-in').hidden = true;
    $('nav').hidden = false;
    $('who').hidden = false;
    $('who-name').textContent = `${session.email} (${session.role})`;
    for (const a of document.querySelectorAll('#nav [data-min-role]')) a.hidden = !can(a.dataset.minRole);
    announce(`Signed in as ${session.email}, ${session.role}.`);
    route();
  } catch (e) {
    session.token = null;
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    $('sign-in-submit').disabled = false;
  }
}

function signOut(message) {
  viewAbort.abort();
  viewAbort = new AbortController();
  clearTimeout(session.timer);
  Object.assign(session, { token: null, email: null, role: null, timer: null });
  $('nav').hidden = true;
  $('who').hidden = true;
  $('view').replaceChildren();
  $('sign-in').hidden = false;
  const err = $('sign-in-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('email').focus();
}

// --- views -----------------------------------------------------------------------------------

function route() {
  viewAbort.abort();
  viewAbort = new AbortController();
  if (!session.token) {
    signOut(null);
    return;
  }
  const parts = (location.hash || '#/fleet').replace(/^#\/?/, '').split('/').map((p) => {
    try { return decodeURIComponent(p); } catch { return ''; }
  });
  const [view, arg] = parts;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === (view === 'tenants' ? 'fleet' : view)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const signal = viewAbort.signal;
  const shown = view === 'tenants' && arg ? tenantView(arg, signal)
    : view === 'jobs' && arg ? jobView(arg, signal)
    : view === 'jobs' ? jobsView(signal)
    : view === 'audit' ? auditView(signal)
    : fleetView(signal);
  shown.catch((e) => {
    if (signal.aborted || (e instanceof ApiError && e.status === 401)) return;
    render(h('h1', {}, 'Something went wrong'), errorBox(e));
  });
}

// Fleet: counts by status and version, what needs attention, and every tenant (paged).
async function fleetView(signal) {
  const fleet = await api('GET', '/fleet', undefined, signal);
  const list = h('div', { id: 'tenant-list' });
  const search = h('input', {
    id: 'tenant-search', type: 'search', inputmode: 'latin', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'tenant-search-help', maxlength: 63,
  });
  const status = h('select', { id: 'tenant-status' },
    h('option', { value: '' }, 'any status'),
    fleet.by_status.map((s) => h('option', { value: s.status }, s.status)));
  const state = { cursors: [null], search: '', status: '' };

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE) });
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) q.set('cursor', cursor);
    if (state.search) q.set('search', state.search);
    if (state.status) q.set('status', state.status);
    list.setAttribute('aria-busy', 'true');
    try {
      const page = await api('GET', `/tenants?${q}`, undefined, signal);
      const first = (state.cursors.length - 1) * PAGE;
      const rows = page.tenants.map((t) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/tenants/${encodeURIComponent(t.schema_name)}` }, t.schema_name)),
        h('td', {}, t.display_name),
        h('td', {}, pill(t.status)),
        h('td', { class: 'num' }, version(t.schema_version)),
        h('td', {}, t.server),
        h('td', {}, when(t.updated_at))));
      const prev = h('button', { type: 'button', class: 'quiet', disabled: state.cursors.length === 1,
        onclick: () => { state.cursors.pop(); load(); } }, 'Previous page');
      const next = h('button', { type: 'button', class: 'quiet', disabled: !page.next_cursor,
        onclick: () => { state.cursors.push(page.next_cursor); load(); } }, 'Next page');
      const shown = page.tenants.length
        ? `Tenants ${number(first + 1)}–${number(first + page.tenants.length)} of ${number(page.total)}`
        : `No tenant matches (of ${number(fleet.total)})`;
      fill(list,
        table(shown, ['Schema', 'Name', 'Status', ['Version', 'num'], 'Server', 'Updated'], rows, shown),
        h('div', { class: 'pager' }, prev, next, h('span', { class: 'muted', id: 'tenant-count' }, shown)));
      announce(shown);
    } catch (e) {
      if (!signal.aborted) fill(list, errorBox(e));
    } finally {
      list.removeAttribute('aria-busy');
    }
  }

  let typing = null;
  const searchHelp = h('span', { id: 'tenant-search-help', class: 'muted' }, 'Start of a schema name: a-z, 0-9 and _.');
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      const v = search.value.trim().toLowerCase();
      if (v && !SEARCH.test(v)) {
        search.setAttribute('aria-invalid', 'true');
        searchHelp.textContent = 'Only a-z, 0-9 and _ can start a schema name.';
        return;
      }
      search.removeAttribute('aria-invalid');
      searchHelp.textContent = 'Start of a schema name: a-z, 0-9 and _.';
      state.search = v;
      state.cursors = [null];
      load();
    }, 250);
  });
  status.addEventListener('change', () => { state.status = status.value; state.cursors = [null]; load(); });

  const most = Math.max(1, ...fleet.by_version.map((v) => v.tenants));
  const bars = fleet.by_version.map((v) => {
    const fill = h('div', { class: `fill${v.version === fleet.latest ? '' : ' behind'}` });
    fill.style.width = `${(100 * v.tenants) / most}%`;
    const label = v.version === null ? 'not migrated' : `v${v.version}${v.version === fleet.latest ? ' (newest)' : ''}`;
    return h('li', {},
      h('span', {}, label),
      h('div', { class: 'track', 'aria-hidden': 'true' }, fill),
      h('span', { class: 'num' }, `${number(v.tenants)}`));
  });
  const attention = fleet.attention.map((t) => h('tr', {},
    h('th', { scope: 'row' }, h('a', { href: `#/tenants/${encodeURIComponent(t.schema_name)}` }, t.schema_name)),
    h('td', {}, pill(t.status)),
    h('td', { class: 'num' }, `${version(t.schema_version)} of ${version(fleet.latest)}`),
    h('td', { class: 'msg' }, t.last_error || (t.status === 'failed' ? '' : 'behind the newest version'))));

  render(
    h('div', { class: 'head' }, h('h1', {}, 'Fleet'),
      h('button', { type: 'button', class: 'quiet', onclick: route }, 'Refresh')),
    h('ul', { class: 'counts', 'aria-label': 'Tenants by status' },
      h('li', {}, h('span', { class: 'n' }, number(fleet.total)), 'tenants'),
      fleet.by_status.map((s) => h('li', { 'data-status': s.status }, h('span', { class: 'n' }, number(s.tenants)), pill(s.status)))),
    h('div', { class: 'row' },
      h('section', { class: 'card', 'aria-labelledby': 'versions-title' },
        h('h2', { id: 'versions-title' }, 'Schema versions'),
        bars.length ? h('ul', { class: 'bars' }, bars) : h('p', { class: 'muted' }, 'No tenants yet.')),
      h('section', { class: 'card', 'aria-labelledby': 'attention-title' },
        h('h2', { id: 'attention-title' }, 'Needs attention'),
        table('Failed tenants first, then tenants behind the newest version',
          ['Schema', 'Status', ['Version', 'num'], 'Why'], attention, 'Nothing: every tenant is active at the newest version.'))),
    h('section', { class: 'card', 'aria-labelledby': 'tenants-title' },
      h('h2', { id: 'tenants-title' }, 'Tenants'),
      h('div', { class: 'filters' },
        h('div', {}, h('label', { for: 'tenant-search' }, 'Search by name'), search, ' ', searchHelp),
        h('div', {}, h('label', { for: 'tenant-status' }, 'Status'), status)),
      list));
  await load();
}

function describeProblem(p) {
  const what = `${p.kind.replaceAll('_', ' ')}${p.version !== undefined ? ` at v${p.version}` : ''}${p.name ? ` (${p.name})` : ''}`;
  const why = p.error || p.reason || p.evidence || (p.applied ? `applied ${p.applied}, file ${p.file}` : '') || (p.holder ? `held by ${p.holder}` : '');
  return why ? `${what}: ${Array.isArray(why) ? why.join('; ') : why}` : what;
}

// Tenant: catalog row, schema state, history, drift, and (for operators) upgrade and repair.
async function tenantView(schema, signal) {
  const path = `/tenants/${encodeURIComponent(schema)}`;
  const [detail, history] = await Promise.all([
    api('GET', path, undefined, signal),
    api('GET', `${path}/history`, undefined, signal),
  ]);
  const { tenant: t, state: s } = detail;
  const rows = history.migrations.map((r) => h('tr', {},
    h('td', { class: 'num' }, `v${r.version}`),
    h('td', {}, r.name),
    h('td', {}, pill(r.state), r.checksum_matches === false ? [' ', pill('checksum_mismatch')] : null,
      r.checksum_matches === null ? ' file gone' : null),
    h('td', {}, when(r.started_at)),
    h('td', { class: 'num' }, duration(r.duration_ms)),
    h('td', { class: 'msg' }, r.error || '')));

  const actions = h('div', { id: 'tenant-actions' });
  const outcome = h('div', { id: 'tenant-outcome', 'aria-live': 'polite' });
  if (can('operator')) {
    const planUpgrade = h('button', { type: 'button', id: 'plan-upgrade', onclick: async () => {
      fill(outcome, h('p', { class: 'muted' }, 'Planning…'));
      try {
        const plan = await api('POST', `${path}/upgrade`, { dry_run: true });
        const steps = (plan.migrations || []).map((m) => `v${m.version} ${m.name || ''}`.trim());
        const go = plan.status === 'planned' && h('button', { type: 'button', id: 'run-upgrade', onclick: async () => {
          if (!await confirmAction(`Upgrade ${schema}?`,
            `This applies ${steps.length || 'the pending'} migration(s) to ${schema} now, from ${version(plan.from)} to ${version(plan.to)}.`,
            'Upgrade now')) return;
          fill(outcome, h('p', { class: 'muted' }, 'Upgrading…'));
          try {
            const done = await api('POST', `${path}/upgrade`, { dry_run: false });
            announce(`${schema}: ${done.status}`);
            await tenantView(schema, signal);
            fill($('tenant-outcome'), h('p', {}, 'Upgrade: ', pill(done.status), ` ${version(done.from)} → ${version(done.to)} in ${duration(done.duration_ms)}`),
              done.error ? errorBox(done.error) : null);
          } catch (e) { fill(outcome, errorBox(e)); }
        } }, `Upgrade to ${version(plan.to)}…`);
        fill(outcome,
          h('h3', {}, 'Upgrade plan (dry run, nothing was written)'),
          h('p', {}, pill(plan.status), ` ${version(plan.from)} → ${version(plan.to)}`),
          steps.length ? h('ul', {}, steps.map((x) => h('li', {}, x))) : null,
          plan.error ? errorBox(plan.error) : null,
          go);
      } catch (e) { fill(outcome, errorBox(e)); }
    } }, 'Plan upgrade (dry run)');
    const planRepair = h('button', { type: 'button', class: 'quiet', id: 'plan-repair', onclick: async () => {
      fill(outcome, h('p', { class: 'muted' }, 'Planning the repair…'));
      try {
        const r = await api('POST', `${path}/repair?dry_run=true`, {});
        const work = r.forgotten.length + r.marked_applied.length + r.checksums_accepted.length;
        const go = work > 0 && h('button', { type: 'button', class: 'danger', id: 'run-repair', onclick: async () => {
          if (!await confirmAction(`Repair ${schema}?`,
            `This forgets ${r.forgotten.length} failed or interrupted migration(s) of ${schema}, so the next upgrade runs them again. Do it only after you checked the schema.`,
            'Repair now')) return;
          try {
            const done = await api('POST', `${path}/repair?dry_run=false`, {});
            announce(`${schema} repaired`);
            await tenantView(schema, signal);
            fill($('tenant-outcome'), h('p', {}, `Repaired: forgot ${done.forgotten.map(version).join(', ') || 'nothing'}; ${done.remaining.length} problem(s) remain.`));
          } catch (e) { fill(outcome, errorBox(e)); }
        } }, 'Apply repair…');
        fill(outcome,
          h('h3', {}, 'Repair plan (dry run, nothing was written)'),
          facts([
            ['Would forget', r.forgotten.map(version).join(', ') || 'nothing'],
            ['Would mark applied', r.marked_applied.map(version).join(', ') || 'nothing'],
            ['Would accept checksums', r.checksums_accepted.map(version).join(', ') || 'nothing'],
            ['Would remain', r.remaining.length ? h('ul', {}, r.remaining.map((p) => h('li', {}, describeProblem(p)))) : 'nothing'],
          ]),
          work === 0 ? h('p', { class: 'muted' }, 'Nothing to repair.') : go);
      } catch (e) { fill(outcome, errorBox(e)); }
    } }, 'Plan repair (dry run)');
    actions.append(h('section', { class: 'card', 'aria-labelledby': 'actions-title' },
      h('h2', { id: 'actions-title' }, 'Actions'),
      h('p', { class: 'muted' }, 'Each action shows its plan first and writes nothing until you confirm.'),
      h('div', { class: 'actions' }, planUpgrade, planRepair), outcome));
  }

  const drift = h('div', { id: 'drift' });
  const driftCard = h('section', { class: 'card', 'aria-labelledby': 'drift-title' },
    h('h2', { id: 'drift-title' }, 'Drift'),
    can('operator')
      ? h('div', {}, h('p', { class: 'muted' }, 'Compares the schema with a scratch copy migrated to its version (built, then dropped).'),
        h('button', { type: 'button', class: 'quiet', id: 'check-drift', onclick: async () => {
          fill(drift, h('p', { class: 'muted' }, 'Checking…'));
          try {
            const fix = await api('GET', `${path}/structure`);
            const d = fix.drift;
            const lines = d ? [...d.missing.map((x) => `missing: ${x}`), ...d.unexpected.map((x) => `unexpected: ${x}`), ...d.changed.map((x) => `changed: ${x}`)] : [];
            fill(drift,
              lines.length
                ? h('div', {}, h('p', {}, pill('failed'), ` ${lines.length} difference(s) from ${version(fix.version)}`),
                  h('ul', {}, lines.map((x) => h('li', {}, x))),
                  fix.statements.length ? [h('p', {}, 'Statements that bring it back (run them by hand; the tool never runs them):'), h('pre', {}, fix.statements.join(';\n') + ';')] : null,
                  fix.unsupported.length ? h('p', { class: 'notice' }, `No statement written for: ${fix.unsupported.join('; ')}`) : null)
                : h('p', {}, pill('ok'), ` No drift: the schema matches ${version(fix.version)}.`));
            announce(lines.length ? `${lines.length} differences` : 'No drift');
          } catch (e) { fill(drift, errorBox(e)); }
        } }, 'Check structure'), drift)
      : h('p', { class: 'muted' }, 'A drift check builds a scratch schema, so it needs the operator role.'));

  render(
    h('p', {}, h('a', { href: '#/fleet' }, '← Fleet')),
    h('div', { class: 'head' }, h('h1', {}, schema), pill(t.status)),
    h('div', { class: 'row' },
      h('section', { class: 'card', 'aria-labelledby': 'catalog-title' },
        h('h2', { id: 'catalog-title' }, 'Catalog'),
        facts([
          ['Display name', t.display_name],
          ['Status', pill(t.status)],
          ['Server', t.server],
          ['Catalog version', version(t.schema_version)],
          ['Created', when(t.created_at)],
          ['Updated', when(t.updated_at)],
          t.last_error && ['Last error', h('span', { class: 'error' }, t.last_error)],
        ])),
      h('section', { class: 'card', 'aria-labelledby': 'schema-title' },
        h('h2', { id: 'schema-title' }, 'Schema'),
        facts([
          ['Exists', s.exists ? 'yes' : 'no'],
          ['Version', `${version(s.version)} (newest ${version(s.latest)})`],
          ['Pending', s.pending.length ? s.pending.map(version).join(', ') : 'none'],
          ['Dirty', s.dirty ? h('span', {}, pill('dirty'), ' needs a repair') : 'no'],
          ['Problems', s.problems.length ? h('ul', {}, s.problems.map((p) => h('li', {}, describeProblem(p)))) : 'none'],
        ]))),
    actions,
    h('section', { class: 'card', 'aria-labelledby': 'history-title' },
      h('h2', { id: 'history-title' }, 'History'),
      table(`Migrations recorded in ${schema}`, [['Version', 'num'], 'Name', 'State', 'Started', ['Took', 'num'], 'Error'], rows, 'No migration recorded yet.')),
    driftCard);
}

// Jobs: the list, and (for operators) a fleet upgrade that starts with its plan.
async function jobsView(signal) {
  const list = h('div', { id: 'job-list' });
  let offset = 0;
  async function load() {
    const page = await api('GET', `/migrations/jobs?limit=25&offset=${offset}`, undefined, signal);
    const rows = page.jobs.map((j) => h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/jobs/${j.id}` }, j.id.slice(0, 8))),
      h('td', {}, j.kind.replaceAll('_', ' '), j.dry_run ? ' (dry run)' : ''),
      h('td', {}, pill(j.state)),
      h('td', { class: 'num' }, `${number(j.succeeded)} ok · ${number(j.failed)} failed · ${number(j.total)} total`),
      h('td', {}, j.requested_by || ''),
      h('td', {}, when(j.created_at)),
      h('td', {}, when(j.finished_at))));
    fill(list,
      table(`Jobs ${page.jobs.length ? offset + 1 : 0}–${offset + page.jobs.length} of ${page.total}, newest first`,
        ['Job', 'Kind', 'State', ['Tenants', 'num'], 'Requested by', 'Created', 'Finished'], rows, 'No job yet.'),
      h('div', { class: 'pager' },
        h('button', { type: 'button', class: 'quiet', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - 25); load(); } }, 'Newer'),
        h('button', { type: 'button', class: 'quiet', disabled: offset + page.jobs.length >= page.total, onclick: () => { offset += 25; load(); } }, 'Older')));
  }
  const start = can('operator') && h('button', { type: 'button', id: 'plan-fleet', onclick: () => startUpgradeAll(true) },
    'Plan a fleet upgrade (dry run)');
  render(
    h('div', { class: 'head' }, h('h1', {}, 'Jobs'), start,
      h('button', { type: 'button', class: 'quiet', onclick: route }, 'Refresh')),
    h('p', { id: 'jobs-error', hidden: true }),
    list);
  await load();
}

async function startUpgradeAll(dryRun) {
  try {
    const job = await api('POST', '/migrations/upgrade-all', { dry_run: dryRun, continue_on_error: true });
    location.hash = `#/jobs/${job.id}`;
  } catch (e) {
    const running = e instanceof ApiError && e.problem && e.problem.job_id;
    const box = errorBox(e);
    if (running) box.append(' ', h('a', { href: `#/jobs/${e.problem.job_id}` }, 'Open the running job'));
    const slot = $('jobs-error') || $('job-outcome');
    if (slot) { slot.hidden = false; fill(slot, box); }
  }
}

// One job, live: a progress bar, outcomes as they arrive (failures with their messages),
// cancel while it runs, and after a dry run the plan with the real upgrade behind a
// confirmation naming its count.
async function jobView(id, signal) {
  let job = (await api('GET', `/migrations/jobs/${encodeURIComponent(id)}`, undefined, signal)).job;
  const seen = new Map();
  const progress = h('progress', { id: 'job-progress', max: 1, value: 0, 'aria-label': 'Job progress' });
  const progressText = h('span', { id: 'job-progress-text' });
  const stateSlot = h('span', { id: 'job-state' });
  const outcomes = h('tbody', {});
  const failures = h('ul', { id: 'job-failures' });
  const failuresCard = h('section', { class: 'card', hidden: true, 'aria-labelledby': 'failures-title' },
    h('h2', { id: 'failures-title' }, 'Failures'), failures);
  const controls = h('div', { class: 'actions', id: 'job-controls' });
  const plan = h('div', { id: 'job-outcome', 'aria-live': 'polite' });
  const live = h('p', { class: 'muted', id: 'job-live' });

  const finished = () => ['succeeded', 'failed', 'cancelled', 'interrupted'].includes(job.state);
  function paint() {
    const done = job.succeeded + job.failed + job.skipped;
    progress.max = Math.max(1, job.total);
    progress.value = finished() ? progress.max : Math.min(done, job.total);
    const planned = [...seen.values()].filter((o) => o.status === 'planned').length;
    progressText.textContent = job.dry_run
      ? `${number(planned)} of ${number(job.total)} tenants planned · ${number(job.failed)} failed`
      : `${number(done)} of ${number(job.total)} tenants done · ${number(job.failed)} failed` +
        (finished() && job.not_attempted ? ` · ${number(job.not_attempted)} not attempted` : '');
    fill(stateSlot, pill(job.state), job.cancel_requested && !finished() ? ' cancel requested' : '');
    fill(controls);
    if (can('operator') && !finished() && !job.cancel_requested) {
      controls.append(h('button', { type: 'button', class: 'danger', id: 'cancel-job', onclick: async () => {
        if (!await confirmAction('Cancel this job?', 'The job stops at the next tenant boundary; tenants already migrated stay migrated.', 'Cancel job')) return;
        try { job = await api('POST', `/migrations/jobs/${job.id}/cancel`); paint(); announce('Cancel requested'); } catch (e) { fill(plan, errorBox(e)); }
      } }, 'Cancel job'));
    }
    if (can('operator') && job.state === 'interrupted') {
      controls.append(h('button', { type: 'button', id: 'resume-job', onclick: async () => {
        try { await api('POST', `/migrations/jobs/${job.id}/resume`); route(); } catch (e) { fill(plan, errorBox(e)); }
      } }, 'Resume job'));
    }
    if (job.dry_run && finished()) {
      const planned = [...seen.values()].filter((o) => o.status === 'planned');
      const targetTo = planned.reduce((m, o) => Math.max(m, o.to_version ?? 0), 0);
      fill(plan,
        h('h2', {}, 'Plan'),
        h('p', { id: 'plan-count' }, planned.length
          ? `${number(planned.length)} tenant(s) would be migrated${targetTo ? ` up to v${targetTo}` : ''}; the others are up to date or left alone.`
          : 'Nothing to do: every tenant is up to date.'),
        can('operator') && planned.length > 0 && h('button', { type: 'button', id: 'run-fleet', onclick: async () => {
          if (!await confirmAction(`Upgrade ${planned.length} tenant(s)?`,
            `This migrates the ${planned.length} tenant(s) of this plan${targetTo ? ` to v${targetTo}` : ''} now (and any tenant that fell behind since), continuing past failures.`,
            `Upgrade ${planned.length} tenant(s)`)) return;
          await startUpgradeAll(false);
        } }, `Upgrade ${number(planned.length)} tenant(s)…`));
    }
  }

  let refreshing = null;
  let summarised = false;
  const refresh = () => {
    // At most one job read at a time: counts follow the outcomes without a request per event.
    // A read that started before the summary arrived must not undo it.
    if (refreshing || summarised) return;
    refreshing = api('GET', `/migrations/jobs/${job.id}`, undefined, signal)
      .then((d) => { if (!summarised) { job = d.job; paint(); } })
      .catch(() => {})
      .finally(() => { refreshing = null; });
  };
  const onEvent = (name, data) => {
    if (!data) return;
    if (name === 'tenant') {
      if (seen.has(data.schema_name)) return;
      seen.set(data.schema_name, data);
      const bad = FAILED_OUTCOMES.has(data.status);
      outcomes.append(h('tr', { 'data-schema': data.schema_name },
        h('th', { scope: 'row' }, h('a', { href: `#/tenants/${encodeURIComponent(data.schema_name)}` }, data.schema_name)),
        h('td', {}, pill(data.status)),
        h('td', { class: 'num' }, `${version(data.from_version)} → ${version(data.to_version)}`),
        h('td', { class: 'num' }, duration(data.duration_ms)),
        h('td', { class: 'num' }, data.attempts),
        h('td', { class: 'msg' }, data.error || '')));
      if (bad) {
        failuresCard.hidden = false;
        failures.append(h('li', {}, h('strong', {}, data.schema_name), `: ${data.error || data.status}`));
      }
      refresh();
    } else if (name === 'summary') {
      summarised = true;
      job = data;
      paint();
      live.textContent = 'Finished.';
      announce(`Job ${job.state}: ${job.succeeded} succeeded, ${job.failed} failed.`);
    }
  };

  render(
    h('p', {}, h('a', { href: '#/jobs' }, '← Jobs')),
    h('div', { class: 'head' }, h('h1', {}, `Job ${job.id.slice(0, 8)}`), stateSlot),
    h('section', { class: 'card', 'aria-labelledby': 'job-summary-title' },
      h('h2', { id: 'job-summary-title' }, `${job.kind.replaceAll('_', ' ')}${job.dry_run ? ' (dry run: nothing is written)' : ''}`),
      facts([
        ['Job id', job.id],
        ['Requested by', job.requested_by || ''],
        ['Created', when(job.created_at)],
        ['Target', job.target_version ? `v${job.target_version}` : 'newest'],
        ['Concurrency', job.concurrency],
        job.error && ['Error', h('span', { class: 'error' }, job.error)],
      ]),
      h('div', { class: 'progress-line' }, progress, progressText),
      live, controls, plan),
    failuresCard,
    h('section', { class: 'card', 'aria-labelledby': 'outcomes-title' },
      h('h2', { id: 'outcomes-title' }, 'Tenants'),
      h('table', {},
        h('caption', {}, 'Outcomes in the order they arrived (up-to-date tenants are only counted)'),
        thead(['Schema', 'Outcome', ['Versions', 'num'], ['Took', 'num'], ['Attempts', 'num'], 'Message']),
        outcomes)));
  paint();
  live.textContent = finished() ? 'Finished.' : 'Live: outcomes appear as tenants finish.';
  try {
    await follow(`/migrations/jobs/${encodeURIComponent(job.id)}/events`, signal, onEvent);
    if (!finished()) {
      // The stream ended without a summary: this replica handed the job off. Follow it again.
      live.textContent = 'The service handed the job to another replica; following it there…';
      refresh();
      if (!signal.aborted) setTimeout(() => { if (!signal.aborted) route(); }, 1000);
    }
  } catch (e) {
    if (signal.aborted || (e instanceof ApiError && e.status === 401)) return;
    fill(live, errorBox(e), h('button', { type: 'button', class: 'quiet', onclick: route }, 'Reconnect'));
  }
}

/** An audit entry's target, linked when it is a tenant or a job. */
function auditTarget(e) {
  if (!e.target) return '';
  if (e.action.startsWith('tenant.')) return h('a', { href: `#/tenants/${encodeURIComponent(e.target)}` }, e.target);
  if (/^(migrations|job)\./.test(e.action) && /^[0-9a-f-]{36}$/.test(e.target)) return h('a', { href: `#/jobs/${e.target}` }, e.target.slice(0, 8));
  return e.target;
}

/** An audit entry's detail (JSON text) as `key: value` lines, leaving out empty values. */
function auditDetail(detail) {
  if (!detail) return '';
  let parsed;
  try { parsed = JSON.parse(detail); } catch { return detail; }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return detail;
  return Object.entries(parsed)
    .filter(([, v]) => v !== null && v !== false && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => `${k.replaceAll('_', ' ')}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
    .join('\n');
}

// Audit: who did what, when (admins only, as the API).
async function auditView(signal) {
  if (!can('admin')) {
    render(h('h1', {}, 'Audit'), h('p', {}, 'The audit log is for admins.'));
    return;
  }
  const list = h('div', { id: 'audit-list' });
  const actor = h('input', { id: 'audit-actor', type: 'text', autocomplete: 'off', maxlength: 254 });
  const action = h('input', { id: 'audit-action', type: 'text', autocomplete: 'off', maxlength: 64, placeholder: 'tenant.create' });
  let befores = [null];
  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE) });
    const before = befores[befores.length - 1];
    if (before !== null) q.set('before', String(before));
    if (actor.value.trim()) q.set('actor', actor.value.trim());
    if (action.value.trim()) q.set('action', action.value.trim());
    try {
      const page = await api('GET', `/audit?${q}`, undefined, signal);
      const rows = page.entries.map((e) => h('tr', {},
        h('td', {}, when(e.at)),
        h('td', {}, e.actor),
        h('td', {}, e.action),
        h('td', {}, auditTarget(e)),
        h('td', {}, pill(e.outcome)),
        h('td', { class: 'msg' }, auditDetail(e.detail)),
        h('td', {}, e.request_id ? h('code', { title: e.request_id }, e.request_id.slice(0, 8)) : '')));
      fill(list,
        table('Newest first', ['When', 'Who', 'Action', 'Target', 'Outcome', 'Detail', 'Request id'], rows, 'No entry matches.'),
        h('div', { class: 'pager' },
          h('button', { type: 'button', class: 'quiet', disabled: befores.length === 1, onclick: () => { befores.pop(); load(); } }, 'Newer'),
          h('button', { type: 'button', class: 'quiet', disabled: !page.next_before, onclick: () => { befores.push(page.next_before); load(); } }, 'Older')));
    } catch (e) {
      if (!signal.aborted) fill(list, errorBox(e));
    }
  }
  const filter = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); befores = [null]; load(); } },
    h('div', {}, h('label', { for: 'audit-actor' }, 'Who (exact e-mail)'), actor),
    h('div', {}, h('label', { for: 'audit-action' }, 'Action'), action),
    h('button', { type: 'submit' }, 'Filter'));
  render(h('h1', {}, 'Audit'), h('section', { class: 'card', 'aria-label': 'Audit log' }, filter, list));
  await load();
}

// --- start -----------------------------------------------------------------------------------

$('sign-in-form').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', () => signOut('Signed out.'));
window.addEventListener('hashchange', route);
route();
