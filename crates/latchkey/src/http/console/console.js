// The admin console: a page over the admin API of the same origin. The admin
// client's credentials live in this module's memory only (never in storage or
// cookies), so closing or reloading the tab signs out. Everything shown is
// set as text, never parsed as HTML.

const $ = (id) => document.getElementById(id);
const PAGE = 25;

let credentials = null;
let nextOffset = null;
let selected = null;

function say(text, isError = false) {
  $('message').textContent = text;
  $('message').className = isError ? 'error' : '';
}

async function api(method, path, body) {
  const headers = { Authorization: `Basic ${btoa(`${credentials.id}:${credentials.secret}`)}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) {
    const error = new Error(data?.error_description || `${resp.status} ${resp.statusText}`);
    error.code = data?.error;
    error.status = resp.status;
    throw error;
  }
  return data;
}

function when(rfc3339) {
  return rfc3339 ? new Date(rfc3339).toLocaleString() : '';
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell ?? '';
    tr.append(td);
  }
  return tr;
}

function showConsole(signedIn) {
  $('sign-in').hidden = signedIn;
  $('console').hidden = !signedIn;
  $('sign-out').hidden = !signedIn;
}

async function signIn(event) {
  event.preventDefault();
  credentials = { id: $('client-id').value.trim(), secret: $('client-secret').value };
  $('client-secret').value = '';
  try {
    await searchUsers();
    showConsole(true);
    say('Signed in.');
  } catch (e) {
    credentials = null;
    say(e.status === 403 ? 'That client is not an admin client.' : `Sign-in failed: ${e.message}`, true);
  }
}

function signOut() {
  credentials = null;
  selected = null;
  $('users').tBodies[0].replaceChildren();
  $('user').hidden = true;
  showConsole(false);
  say('Signed out.');
}

async function searchUsers(more = false, quiet = false) {
  const offset = more ? nextOffset : 0;
  const query = new URLSearchParams({ email: $('search').value.trim(), limit: PAGE, offset });
  const page = await api('GET', `/admin/v1/users?${query}`);
  const body = $('users').tBodies[0];
  if (!more) body.replaceChildren();
  for (const user of page.users) {
    const status = document.createElement('span');
    status.textContent = user.disabled ? 'disabled' : user.email_verified ? 'active' : 'unverified';
    if (user.disabled) status.className = 'disabled';
    const tr = row([user.email, user.name, status, when(user.created_at)]);
    tr.dataset.user = user.id;
    tr.addEventListener('click', () => openUser(user.id).catch((e) => say(e.message, true)));
    body.append(tr);
  }
  nextOffset = page.next_offset ?? null;
  $('more-users').hidden = nextOffset === null;
  if (!more && !quiet) say(`${page.users.length}${nextOffset === null ? '' : '+'} user(s) found.`);
}

async function openUser(id) {
  const [{ user, sessions }, { events }] = await Promise.all([
    api('GET', `/admin/v1/users/${encodeURIComponent(id)}/sessions`),
    api('GET', `/admin/v1/events?${new URLSearchParams({ user: id, limit: 50 })}`),
  ]);
  selected = user;
  for (const tr of $('users').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.user === id);
  $('user').hidden = false;
  $('user-title').textContent = user.email;
  $('user-facts').textContent = [
    user.name,
    user.disabled ? 'disabled' : 'enabled',
    user.email_verified ? 'address verified' : 'address not verified',
    `created ${when(user.created_at)}`,
    user.id,
  ].filter(Boolean).join(' · ');
  $('disable').hidden = user.disabled;
  $('enable').hidden = !user.disabled;

  const sessionRows = sessions.map((s) => {
    const revoke = document.createElement('button');
    revoke.type = 'button';
    revoke.textContent = 'Revoke';
    revoke.dataset.session = s.id;
    revoke.addEventListener('click', () => act(`Revoked the session.`, 'DELETE',
      `/admin/v1/users/${encodeURIComponent(user.id)}/sessions/${encodeURIComponent(s.id)}`));
    const device = document.createElement('span');
    device.textContent = s.device || s.user_agent || 'unknown device';
    device.title = s.user_agent || '';
    return row([device, s.ip, when(s.created_at), when(s.last_used_at), revoke]);
  });
  $('sessions').tBodies[0].replaceChildren(...sessionRows);
  if (sessions.length === 0) {
    const none = row(['No live sessions.']);
    none.cells[0].colSpan = 5;
    $('sessions').tBodies[0].append(none);
  }

  const eventRows = events.map((e) => row([when(e.created_at), e.kind, e.ip, e.actor, e.detail]));
  $('events').tBodies[0].replaceChildren(...eventRows);
}

async function act(done, method, path, body) {
  try {
    await api(method, path, body);
    await openUser(selected.id);
    await searchUsers(false, true);
    say(done);
  } catch (e) {
    say(e.message, true);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    searchUsers().catch((e) => say(e.message, true));
  });
  $('more-users').addEventListener('click', () => searchUsers(true).catch((e) => say(e.message, true)));
  const userPath = (action) => `/admin/v1/users/${encodeURIComponent(selected.id)}/${action}`;
  $('disable').addEventListener('click', () => act('Disabled; every session ended.', 'POST', userPath('disable')));
  $('enable').addEventListener('click', () => act('Enabled.', 'POST', userPath('enable')));
  $('revoke-all').addEventListener('click', () => act('Revoked every session.', 'DELETE', userPath('sessions')));
});
