// The pages Latchkey's mailed links open when no front end of its own is
// set (app_url): verify an address, reset a forgotten password, confirm or
// undo an email change. The token comes from the URL fragment, which never
// reaches a server; it is removed from the address bar at once.

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const path = location.pathname;
const token = new URLSearchParams(location.hash.slice(1)).get('token') ?? '';
history.replaceState(null, '', path);

function say(title, text, error = false) {
  $('title').textContent = title;
  $('message').textContent = text;
  $('message').classList.toggle('error', error);
}

async function post(url, body) {
  const resp = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (resp.ok) return resp.status === 204 ? null : resp.json();
  const error = await resp.json().catch(() => ({}));
  throw new Error(error.error_description || `the server answered ${resp.status}`);
}

async function run(title, work) {
  try {
    say(title, await work());
  } catch (error) {
    say(title, error.message, true);
  }
}

function form(id, submit) {
  const element = $(id);
  element.hidden = false;
  element.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(element));
    element.querySelector('button').disabled = true;
    try {
      await submit(values);
      element.hidden = true;
    } finally {
      element.querySelector('button').disabled = false;
    }
  });
}

switch (path) {
  case '/verify-email':
    run('Email verification', async () => {
      await post('/v1/verify-email', { token });
      return 'Your email address is verified. You can close this page.';
    });
    break;
  case '/confirm-email':
    run('New email address', async () => {
      const user = await post('/v1/email-change/confirm', { token });
      return `Your account now uses ${user.email}.`;
    });
    break;
  case '/cancel-email-change':
    run('Email change undone', async () => {
      const user = await post('/v1/email-change/cancel', { token });
      return `Your account uses ${user.email} again and every device was signed out. Reset your password next.`;
    });
    break;
  case '/reset-password':
    say('Choose a new password', 'Every device signed in to your account will be signed out.');
    form('reset-form', (values) =>
      run('Choose a new password', async () => {
        await post('/v1/password-reset/confirm', { token, new_password: values.password });
        return 'Your password is changed. Sign in with it.';
      }));
    break;
  default:
    say('Reset your password', 'We will mail you a link to choose a new password.');
    form('forgot-form', (values) =>
      run('Reset your password', async () => {
        await post('/v1/password-reset', { email: values.email });
        return 'If an account uses that address, a link is on its way.';
      }));
}
