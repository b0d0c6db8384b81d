// The client as people install it: `npm pack` makes the tarball, a scratch
// project installs it (no registry needed: it has no dependencies), imports
// it as an ES module and type-checks a TypeScript file against its types with
// `tsc --noEmit` (TypeScript from this package's devDependencies).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');
const scratch = mkdtempSync(join(tmpdir(), 'latchkey-js-'));
const skip = !existsSync(tsc) && 'needs typescript in clients/js/node_modules (npm ci)';

after(() => rmSync(scratch, { recursive: true, force: true }));

function run(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

test('npm pack makes a tarball that installs, imports and type-checks', { skip, timeout: 120_000 }, () => {
  const manifest = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
  assert.equal(manifest.private, undefined, 'publishable');
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', scratch], here));
  const files = packed.files.map((f) => f.path).sort();
  assert.deepEqual(files, ['README.md', 'latchkey.d.ts', 'latchkey.js', 'package.json']);

  const project = join(scratch, 'app');
  run('mkdir', ['-p', project]);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }));
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', join(scratch, packed.filename)], project);

  writeFileSync(join(project, 'index.mjs'), `
import { createClient, LatchkeyError } from '${manifest.name}';
const client = createClient({ baseUrl: 'https://auth.example.com', storage: null, locks: null, channel: null });
const methods = ['register', 'login', 'logout', 'logoutAll', 'changePassword', 'requestPasswordReset',
  'resetPassword', 'verifyEmail', 'requestVerification', 'resendVerification', 'changeEmail',
  'confirmEmailChange', 'cancelEmailChange', 'sessions', 'revokeSession', 'reauthenticate', 'me', 'events', 'fetch',
  'verifyMfa', 'mfa', 'enrolTotp', 'confirmTotp', 'disableTotp', 'regenerateRecoveryCodes',
  'signInWithPasskey', 'registerPasskey', 'passkeys', 'renamePasskey', 'removePasskey',
  'accessToken', 'isLoggedIn', 'resume', 'refresh', 'sessionId', 'on', 'close'];
const missing = methods.filter((m) => typeof client[m] !== 'function');
if (missing.length) throw new Error('missing: ' + missing);
if (!(new LatchkeyError(400, 'x') instanceof Error)) throw new Error('LatchkeyError');
console.log('imported', methods.length, 'methods');
`);
  assert.match(run('node', ['index.mjs'], project), /imported 37 methods/);

  writeFileSync(join(project, 'check.ts'), `
import { createClient, LatchkeyError, type Session, type SecurityEventPage, type User } from '${manifest.name}';
const client = createClient({ baseUrl: 'https://auth.example.com', refreshTimeout: 5000, lockTimeout: 8000 });
async function main(): Promise<void> {
  const user: User = await client.login({ email: 'a@example.com', password: 'p' });
  const second: User = await client.verifyMfa({ mfaToken: 't', recoveryCode: 'abcde-fghjk' });
  const codes: string[] = await client.confirmTotp({ code: '123456' });
  const sessions: Session[] = await client.sessions();
  const device: string | null = sessions[0].device;
  const page: SecurityEventPage = await client.events({ limit: 10 });
  const next: number | undefined = page.next_before;
  const off: () => void = client.on('logout', ({ reason }) => console.log(reason));
  off();
  try {
    await client.refresh();
  } catch (e) {
    if (e instanceof LatchkeyError && e.code === 'timeout') console.log(e.status);
  }
  console.log(user.email, device, next, second.id, codes.length);
}
void main;
`);
  writeFileSync(join(project, 'wrong.ts'), `
import { createClient } from '${manifest.name}';
const client = createClient({ baseUrl: 'x' });
void client.login({ email: 'a@example.com' });
`);
  const config = { compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], skipLibCheck: false } };
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ ...config, files: ['check.ts'] }));
  run('node', [tsc, '--noEmit', '-p', project], project);

  // The types do catch a mistake (a missing password).
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ ...config, files: ['wrong.ts'] }));
  assert.throws(
    () => run('node', [tsc, '--noEmit', '-p', project], project),
    (e) => /Property 'password' is missing/.test(e.stdout),
  );
});
