// A real SAML 2.0 IdP for the brokering tests: each startSimpleSamlPhp() runs Debian's
// SimpleSAMLphp 1.19 under `php -S` from a fresh temp dir (its own config, metadata, sessions,
// logs and a self-signed signing certificate made per start) on a free loopback port. Users come
// from exampleauth:UserPass; each service provider (a Cloakroom broker endpoint) is registered in
// saml20-sp-remote with an HTTP-POST AssertionConsumerService and an optional HTTP-Redirect
// SingleLogoutService.
//
// What the IdP sends (per SP, see spRemote):
// - Response and Assertion both signed (rsa-sha256, exclusive c14n, the certificate in KeyInfo);
//   Response Destination and SubjectConfirmationData Recipient are the registered ACS URL.
// - NameID: the user's `uid` attribute (the username unless attributes.uid says otherwise), in
//   the SP's nameIdFormat (default persistent). A NameIDPolicy Format in the AuthnRequest wins
//   when it is persistent or unspecified (uid), emailAddress (mail, when the user has exactly
//   one) or transient (random); any other format gets the SP's nameIdFormat.
// - Attributes: exactly the user's attributes (plus uid), NameFormat basic, plain names (uid,
//   mail, givenName, sn, ...), string values.
// - Logout messages to the SP are signed (sign.logout), HTTP-Redirect query signatures.
// SimpleSAMLphp, php (with the xml, mbstring, curl, intl, sqlite3 extensions) and openssl must be
// installed: startSimpleSamlPhp throws a clear error otherwise (.ci/run installs them).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { AddressInUse, watchPeer } from './peer-process.ts';

export const SIMPLESAMLPHP_DIR = process.env.SIMPLESAMLPHP_DIR || '/usr/share/simplesamlphp';
const PHP = process.env.PHP_PATH || 'php';

export const NAMEID_PERSISTENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';
export const NAMEID_TRANSIENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient';
export const NAMEID_UNSPECIFIED = 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';
export const NAMEID_EMAIL = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
export const ATTRNAME_FORMAT_BASIC = 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic';
const BINDING_POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
const BINDING_REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';

export type SamlTestUser = {
  /** Login name; also the NameID (as attribute uid) unless attributes.uid is given. No ':'. */
  username: string;
  password: string;
  /** Released as given (NameFormat basic), e.g. { mail: ['a@example.org'], givenName: ['Ann'] }. */
  attributes: Record<string, string[]>;
};

export type SamlServiceProvider = {
  entityId: string;
  /** HTTP-POST AssertionConsumerService: where the IdP posts every SAMLResponse. */
  acsUrl: string;
  /** Further HTTP-POST ACS URLs an IdP-initiated login may name (Cloakroom's .../endpoint/clients/{client}). */
  moreAcsUrls?: string[];
  /** HTTP-Redirect SingleLogoutService; without it the SP takes no part in single logout. */
  sloUrl?: string;
  /**
   * NameID format when the AuthnRequest asks for none the IdP can make (default persistent).
   * The value is the user's uid whatever the format, except transient (random per login) and
   * emailAddress when requested in the NameIDPolicy (mail).
   */
  nameIdFormat?: string;
  /** Sign the Assertion (default true). */
  signAssertion?: boolean;
  /** Sign the Response (default true). */
  signResponse?: boolean;
  /** SP signing certificate (base64 DER): when set, AuthnRequests must carry a valid signature (validate.authnrequest). */
  spCertificateBase64?: string;
};

export type SimpleSamlPhpOptions = {
  /** Service providers to register (Cloakroom broker endpoints). */
  serviceProviders: SamlServiceProvider[];
  users: SamlTestUser[];
};

export type SimpleSamlPhp = {
  /** http://127.0.0.1:PORT */
  baseUrl: string;
  /** The IdP entity id (its metadata URL). */
  entityId: string;
  metadataUrl: string;
  /** SingleSignOnService (HTTP-Redirect; HTTP-POST also accepted at the same URL). */
  ssoUrl: string;
  /** SingleLogoutService (HTTP-Redirect). */
  sloUrl: string;
  /** The IdP signing certificate (base64 DER, no PEM armour). */
  certificateBase64: string;
  /** The instance's temp dir (config/, metadata/, cert/, sessions/, log/). */
  dir: string;
  /** The php -S master PID (its workers share its process group) while it runs. */
  readonly pid: number | undefined;
  /** URL that starts an IdP-initiated login for a registered SP (answers with an unsolicited Response). */
  idpInitiatedUrl(spEntityId: string, relayState?: string, consumerUrl?: string): string;
  /** SimpleSAMLphp's log (for failure messages). */
  log(): Promise<string>;
  /** Stops php and all its workers, removes the temp dir. */
  stop(): Promise<void>;
};

// --- availability -------------------------------------------------------------------------

let installed = false;

/** Throws when SimpleSAMLphp, php, its extensions or openssl are missing (checked once per process). */
function requireInstalled(): void {
  if (installed) return;
  const problems: string[] = [];
  try {
    accessSync(path.join(SIMPLESAMLPHP_DIR, 'www', 'saml2', 'idp', 'SSOService.php'), constants.R_OK);
  } catch {
    problems.push(`SimpleSAMLphp 1.19 is not in ${SIMPLESAMLPHP_DIR} (www/saml2/idp/SSOService.php)`);
  }
  const modules = spawnSync(PHP, ['-m'], { encoding: 'utf8' });
  if (modules.error || modules.status !== 0) {
    problems.push(`${PHP} does not run (${modules.error?.message ?? modules.stderr.trim()})`);
  } else {
    const loaded = new Set(modules.stdout.split('\n').map((line) => line.trim().toLowerCase()));
    const missing = ['dom', 'openssl', 'mbstring', 'curl', 'intl', 'pdo_sqlite', 'session', 'zlib'].filter((m) => !loaded.has(m));
    if (missing.length > 0) problems.push(`php lacks the extensions ${missing.join(', ')}`);
  }
  const ssl = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (ssl.error || ssl.status !== 0) problems.push('openssl is not on PATH');
  if (problems.length > 0) {
    throw new Error(`SimpleSAMLphp test IdP unavailable: ${problems.join('; ')}. Install Debian's simplesamlphp php-cli php-xml php-mbstring php-curl php-intl php-sqlite3 openssl (.ci/run does).`);
  }
  installed = true;
}

// --- configuration ------------------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** PHP that loads a JSON file next to it into $<variable> (no PHP string escaping to get wrong). */
function phpLoadingJson(variable: 'config' | 'metadata', jsonFile: string): string {
  return `<?php\n$${variable} = json_decode(file_get_contents(__DIR__ . '/${jsonFile}'), true, 512, JSON_THROW_ON_ERROR);\n`;
}

function sspConfig(dir: string, port: number): Json {
  return {
    baseurlpath: `http://127.0.0.1:${port}/`,
    certdir: path.join(dir, 'cert') + '/',
    loggingdir: path.join(dir, 'log') + '/',
    datadir: path.join(dir, 'data') + '/',
    tempdir: path.join(dir, 'tmp'),
    metadatadir: path.join(dir, 'metadata') + '/',
    technicalcontact_name: 'Cloakroom tests',
    technicalcontact_email: 'na@example.org',
    timezone: 'UTC',
    secretsalt: randomBytes(24).toString('hex'),
    'auth.adminpassword': randomBytes(12).toString('hex'),
    'admin.protectindexpage': false,
    'admin.protectmetadata': false,
    // No network from tests.
    'admin.checkforupdates': false,
    // Return URLs (logout ReturnTo, RelayState redirects) may point at any loopback port.
    'trusted.url.domains': ['127\\.0\\.0\\.1(:\\d+)?', 'localhost(:\\d+)?'],
    'trusted.url.regex': true,
    'enable.http_post': false,
    'assertion.allowed_clock_skew': 180,
    debug: { saml: false, backtraces: true, validatexml: false },
    showerrors: true,
    errorreporting: false,
    'logging.level': 6, // SimpleSAML\Logger::INFO
    'logging.handler': 'file',
    'logging.logfile': 'simplesamlphp.log',
    'statistics.out': [],
    'enable.saml20-idp': true,
    'enable.shib13-idp': false,
    'enable.adfs-idp': false,
    'module.enable': { exampleauth: true, core: true, saml: true },
    'store.type': 'phpsession',
    'session.duration': 8 * 3600,
    'session.datastore.timeout': 4 * 3600,
    'session.state.timeout': 3600,
    // Browsers share cookies across ports of one host: names per instance keep parallel IdPs apart.
    'session.cookie.name': `SimpleSAMLSessionID_${port}`,
    'session.cookie.lifetime': 0,
    'session.cookie.path': '/',
    'session.cookie.domain': null,
    'session.cookie.secure': false,
    'session.cookie.samesite': null,
    'session.phpsession.cookiename': `SimpleSAML_${port}`,
    'session.phpsession.savepath': path.join(dir, 'sessions'),
    'session.phpsession.httponly': true,
    'session.authtoken.cookiename': `SimpleSAMLAuthToken_${port}`,
    'session.rememberme.enable': false,
    'language.default': 'en',
    'language.cookie.secure': false,
    'language.cookie.name': `language_${port}`,
    'theme.use': 'default',
    'template.auto_reload': false,
    production: true,
  };
}

function idpHosted(entityId: string): Json {
  return {
    [entityId]: {
      host: '__DEFAULT__',
      privatekey: 'idp.key',
      certificate: 'idp.crt',
      auth: 'users',
      'signature.algorithm': RSA_SHA256,
      'saml20.sign.response': true,
      'saml20.sign.assertion': true,
      'attributes.NameFormat': ATTRNAME_FORMAT_BASIC,
      'userid.attribute': 'uid',
      NameIDFormat: [NAMEID_PERSISTENT, NAMEID_UNSPECIFIED, NAMEID_EMAIL, NAMEID_TRANSIENT],
      SingleSignOnServiceBinding: [BINDING_REDIRECT, BINDING_POST],
      SingleLogoutServiceBinding: [BINDING_REDIRECT, BINDING_POST],
      // The NameIDs a NameIDPolicy may ask for; SAML2::buildAssertion falls back to the SP's
      // NameIDFormat with simplesaml.nameidattribute (uid) for any other.
      authproc: {
        10: { class: 'saml:AttributeNameID', Format: NAMEID_PERSISTENT, attribute: 'uid' },
        11: { class: 'saml:AttributeNameID', Format: NAMEID_UNSPECIFIED, attribute: 'uid' },
        12: { class: 'saml:AttributeNameID', Format: NAMEID_EMAIL, attribute: 'mail' },
        13: { class: 'saml:TransientNameID' },
      },
    },
  };
}

function spRemote(sps: SamlServiceProvider[]): Json {
  const metadata: Record<string, Json> = {};
  for (const sp of sps) {
    metadata[sp.entityId] = {
      AssertionConsumerService: [
        { Binding: BINDING_POST, Location: sp.acsUrl, index: 0, isDefault: true },
        ...(sp.moreAcsUrls ?? []).map((Location, i) => ({ Binding: BINDING_POST, Location, index: i + 1 })),
      ],
      ...(sp.sloUrl ? { SingleLogoutService: [{ Binding: BINDING_REDIRECT, Location: sp.sloUrl }] } : {}),
      NameIDFormat: sp.nameIdFormat ?? NAMEID_PERSISTENT,
      'simplesaml.nameidattribute': 'uid',
      'simplesaml.attributes': true,
      'attributes.NameFormat': ATTRNAME_FORMAT_BASIC,
      'signature.algorithm': RSA_SHA256,
      'saml20.sign.response': sp.signResponse ?? true,
      'saml20.sign.assertion': sp.signAssertion ?? true,
      'sign.logout': true,
      ...(sp.spCertificateBase64
        ? { 'validate.authnrequest': true, certData: sp.spCertificateBase64.replace(/\s+/g, '') }
        : { 'validate.authnrequest': false }),
    };
  }
  return metadata;
}

function authSources(users: SamlTestUser[]): Json {
  const source: Record<string, Json> = {};
  for (const user of users) {
    if (user.username.includes(':') || user.username === '') throw new Error(`SAML test user name must be non-empty without ':' (exampleauth:UserPass): ${user.username}`);
    const attributes: Record<string, string[]> = { uid: [user.username], ...user.attributes };
    source[`${user.username}:${user.password}`] = attributes;
  }
  return source;
}

async function writeConfig(dir: string, port: number, entityId: string, options: SimpleSamlPhpOptions): Promise<void> {
  const write = (file: string, data: string) => writeFile(path.join(dir, file), data);
  await Promise.all([
    write('config/config.json', JSON.stringify(sspConfig(dir, port))),
    write('config/config.php', phpLoadingJson('config', 'config.json')),
    write('config/users.json', JSON.stringify(authSources(options.users))),
    // The first element (key 0) names the source's class; the rest are 'user:password' => attributes.
    write('config/authsources.php', `<?php\n$config = ['admin' => ['core:AdminPassword'], 'users' => array_merge(['exampleauth:UserPass'], json_decode(file_get_contents(__DIR__ . '/users.json'), true, 512, JSON_THROW_ON_ERROR))];\n`),
    write('metadata/saml20-idp-hosted.json', JSON.stringify(idpHosted(entityId))),
    write('metadata/saml20-idp-hosted.php', phpLoadingJson('metadata', 'saml20-idp-hosted.json')),
    write('metadata/saml20-sp-remote.json', JSON.stringify(spRemote(options.serviceProviders))),
    write('metadata/saml20-sp-remote.php', phpLoadingJson('metadata', 'saml20-sp-remote.json')),
  ]);
}

function run(command: string, args: string[]): Promise<{ stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ stderr, code: code ?? (signal ? 128 : 1) }));
  });
}

/** A fresh self-signed RSA-2048 signing certificate (idp.key, idp.crt); returns the base64 DER. */
async function makeSigningCertificate(certDir: string): Promise<string> {
  const result = await run('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '3650',
    '-keyout', path.join(certDir, 'idp.key'), '-out', path.join(certDir, 'idp.crt'),
    '-subj', '/CN=SimpleSAMLphp test IdP',
  ]);
  if (result.code !== 0) throw new Error(`openssl req failed: ${result.stderr.trim()}`);
  const pem = await readFile(path.join(certDir, 'idp.crt'), 'utf8');
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

// --- process bookkeeping: no php outlives the test process ---------------------------------

type Running = { child: ChildProcess; pgid: number; watchdog: ChildProcess; exited: Promise<void> };
const live = new Map<string, Running | undefined>();

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  // Never 0 or 1: kill(-0) would hit our own process group.
  if (pgid > 1) try { process.kill(-pgid, signal); } catch { /* gone */ }
}

process.on('exit', () => {
  for (const [dir, running] of live) {
    if (running) {
      if (running.watchdog.pid) try { process.kill(running.watchdog.pid, 'SIGKILL'); } catch { /* gone */ }
      killGroup(running.pgid, 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

// If this process dies without exit handlers (a killed test worker), the watchdog sees its
// stdin close, stops php's process group (master and workers) and removes the dir.
const WATCHDOG = `
if read -r _; then exit 0; fi
[ "$1" -gt 1 ] && kill -KILL "-$1" 2>/dev/null
rm -rf "$2"
`;

function disarm(watchdog: ChildProcess): void {
  if (watchdog.stdin && !watchdog.stdin.destroyed) watchdog.stdin.end('disarm\n');
}

/** Whether a process of the group still runs (zombies awaiting their reaper do not count). */
function groupAlive(pgid: number): boolean {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  }
  for (const pid of entries) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}

/**
 * Kills the group (master and workers) and waits until all are gone. SIGKILL: php -S has nothing
 * to flush (sessions and logs are files in the dir we remove), and on SIGTERM its master only
 * notices after its 1 s poll timeout.
 */
async function stopGroup(running: Running): Promise<void> {
  disarm(running.watchdog);
  killGroup(running.pgid, 'SIGKILL');
  await running.exited;
  const deadline = Date.now() + 5_000;
  while (groupAlive(running.pgid)) {
    if (Date.now() > deadline) throw new Error(`php processes of group ${running.pgid} survived SIGKILL`);
    await sleep(10);
  }
}

// --- starting -----------------------------------------------------------------------------

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}


/** Spawns php -S in its own process group and waits until the IdP metadata answers. */
async function launch(dir: string, port: number, metadataUrl: string): Promise<Running> {
  const child = spawn(PHP, [
    // Workers fork from the master, so they share its opcode cache: later requests skip compiling.
    '-d', 'opcache.enable_cli=1',
    '-d', 'display_errors=stderr',
    '-S', `127.0.0.1:${port}`, '-t', path.join(SIMPLESAMLPHP_DIR, 'www'),
  ], {
    cwd: dir,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SIMPLESAMLPHP_CONFIG_DIR: path.join(dir, 'config'), PHP_CLI_SERVER_WORKERS: '4' },
  });
  const peer = watchPeer(child);
  const { exited } = peer;
  if (child.pid === undefined) {
    await exited;
    throw new Error(`could not start ${PHP} -S: ${peer.log().trim()}`);
  }
  const pgid = child.pid;
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'simplesamlphp-watchdog', String(pgid), dir], { stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.on('error', () => { /* without sh, only the exit handler cleans up */ });
  watchdog.stdin?.on('error', () => {});
  const running: Running = { child, pgid, watchdog, exited };
  live.set(dir, running);

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (peer.exitCode() !== undefined) {
      await stopGroup(running);
      if (/Address already in use/i.test(peer.log())) throw new AddressInUse(peer.log());
      throw new Error(`php -S exited (${peer.exitCode()}) before serving SimpleSAMLphp:\n${peer.log().trim()}`);
    }
    let answer: { status: number; body: string } | undefined;
    try {
      const response = await fetch(metadataUrl, { signal: AbortSignal.timeout(2_000) });
      answer = { status: response.status, body: await response.text() };
    } catch {
      // not listening yet
    }
    if (answer?.status === 200 && answer.body.includes('IDPSSODescriptor')) return running;
    if (answer) {
      // A configuration problem: SimpleSAMLphp shows its error page (with status 200 under php -S).
      await stopGroup(running);
      const sspLog = await readFile(path.join(dir, 'log', 'simplesamlphp.log'), 'utf8').catch(() => '');
      throw new Error(`SimpleSAMLphp metadata answered ${answer.status} without IdP metadata:\n${answer.body.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 2_000)}\n${sspLog.slice(-2_000)}\n${peer.log().trim()}`);
    }
    if (Date.now() > deadline) {
      await stopGroup(running);
      throw new Error(`SimpleSAMLphp did not answer on port ${port} within 15 s:\n${peer.log().trim()}`);
    }
    await Promise.race([sleep(25), exited]);
  }
}

/** Starts a fresh SimpleSAMLphp IdP with these users and SPs (about 0.3 s, most of it the RSA key). */
export async function startSimpleSamlPhp(options: SimpleSamlPhpOptions): Promise<SimpleSamlPhp> {
  requireInstalled();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cloakroom-simplesamlphp-'));
  live.set(dir, undefined);
  let running: Running | undefined;
  let baseUrl = '';
  let certificateBase64: string;
  try {
    await Promise.all(['config', 'metadata', 'cert', 'sessions', 'log', 'data', 'tmp'].map((d) => mkdir(path.join(dir, d))));
    certificateBase64 = await makeSigningCertificate(path.join(dir, 'cert'));
    for (let attempt = 1; !running; attempt++) {
      const port = await freePort();
      baseUrl = `http://127.0.0.1:${port}`;
      await writeConfig(dir, port, `${baseUrl}/saml2/idp/metadata.php`, options);
      try {
        running = await launch(dir, port, `${baseUrl}/saml2/idp/metadata.php`);
      } catch (error) {
        live.set(dir, undefined);
        if (!(error instanceof AddressInUse) || attempt >= 10) throw error;
      }
    }
  } catch (error) {
    live.delete(dir);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  const entityId = `${baseUrl}/saml2/idp/metadata.php`;
  return {
    baseUrl,
    entityId,
    metadataUrl: entityId,
    ssoUrl: `${baseUrl}/saml2/idp/SSOService.php`,
    sloUrl: `${baseUrl}/saml2/idp/SingleLogoutService.php`,
    certificateBase64,
    dir,
    get pid() { return running?.child.pid; },
    idpInitiatedUrl(spEntityId, relayState, consumerUrl) {
      const params = new URLSearchParams({ spentityid: spEntityId });
      if (relayState !== undefined) params.set('RelayState', relayState);
      // One of the SP's registered ACS URLs (SimpleSAMLphp checks it against the metadata).
      if (consumerUrl !== undefined) params.set('ConsumerURL', consumerUrl);
      return `${baseUrl}/saml2/idp/SSOService.php?${params}`;
    },
    log: () => readFile(path.join(dir, 'log', 'simplesamlphp.log'), 'utf8').catch(() => ''),
    async stop() {
      const current = running;
      running = undefined;
      if (current) await stopGroup(current);
      live.delete(dir);
      if (existsSync(dir)) await rm(dir, { recursive: true, force: true });
    },
  };
}
