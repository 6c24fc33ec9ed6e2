// A Cisco Finesse stand-in for tests: HTTPS on a free loopback port with a certificate from a test
// CA (SAN IP:127.0.0.1, DNS:localhost; made once with openssl and cached in the temp dir), serving
// the documented XML (cx-platforms.md section 2) for GET /finesse/api/User/{id} (Basic or Bearer),
// /finesse/api/Users and /finesse/api/Teams (admin Basic). Modes make it slow, broken or failing;
// a stopped instance (or closedPort()) is a dead server. Requests are recorded without secrets.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

export type FinesseStandInRole = 'Agent' | 'Supervisor';

export type FinesseStandInUser = {
  loginId: string;
  loginName: string;
  password: string;
  firstName?: string;
  lastName?: string;
  extension?: string;
  roles?: FinesseStandInRole[];
  teamId?: string;
  teamName?: string;
  /** A supervisor's teams (<teams><Team>). */
  supervisedTeams?: { id: string; name: string }[];
};

export type FinesseStandInMode =
  /** Documented answers. */
  | 'normal'
  /** Headers only after `slowMs` (beyond the client's read timeout). */
  | 'slow'
  /** 200 with a truncated, unparseable XML body. */
  | 'broken-xml'
  /** 503 to everything. */
  | 'down-5xx';

export type FinesseStandInRequest = {
  method: string;
  /** Path and query as received (still percent-encoded). */
  path: string;
  auth: 'basic' | 'bearer' | 'none' | 'other';
  /** The Basic user name (never the password, never the token). */
  username?: string;
  /** The status answered. */
  status: number;
};

export type FinesseStandInOptions = {
  mode?: FinesseStandInMode;
  /** Delay of the 'slow' mode (default 30 s; stop() cuts it short). */
  slowMs?: number;
  adminUsername?: string;
  adminPassword?: string;
};

export type FinesseStandIn = {
  /** https://127.0.0.1:P */
  url: string;
  port: number;
  /** The test CA (PEM) that signed the server certificate. */
  caPem: string;
  /** By loginId. */
  users: Map<string, FinesseStandInUser>;
  /** By id. */
  teams: Map<string, { id: string; name: string }>;
  adminUsername: string;
  adminPassword: string;
  mode: FinesseStandInMode;
  slowMs: number;
  requests: FinesseStandInRequest[];
  addUser(user: FinesseStandInUser): FinesseStandInUser;
  addTeam(team: { id: string; name: string }): void;
  /** An IdS-like access token accepted as Bearer for that user only. */
  issueBearer(loginId: string): string;
  /** The token is no longer accepted (expired or revoked at IdS). */
  revokeBearer(token: string): void;
  /** The <User> document served for that user. */
  userXml(loginId: string): string;
  /** Closes the server and every open connection (pending slow answers included): its port is then dead. */
  stop(): Promise<void>;
};

// --- TLS material (cached on disk) ---------------------------------------------------------

type Tls = { caPem: string; cert: string; key: string };

let tlsMaterial: Promise<Tls> | undefined;
// Shared by every test process and run (test workers are killed without exit handlers, so a
// per-process dir would leak); made once, atomically, like test/support/slapd.ts does.
const TLS_CACHE = path.join(os.tmpdir(), `cloakroom-finesse-tls-v1-${process.getuid?.() ?? 'user'}`);

function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`openssl ${args[0]} failed: ${stderr.trim()}`))));
  });
}

async function makeTestCa(dir: string): Promise<void> {
  const file = (name: string) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '3650',
    '-subj', '/CN=Cloakroom Test Finesse CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await openssl(['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(file('server.ext'), [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectKeyIdentifier=hash',
    'authorityKeyIdentifier=keyid,issuer',
    '',
  ].join('\n'));
  await openssl(['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-out', file('server.pem'), '-days', '3650', '-extfile', file('server.ext')]);
}

/** The test CA and the server certificate, made once and cached. */
export function finesseTestTls(): Promise<Tls> {
  tlsMaterial ??= (async () => {
    const file = (name: string) => path.join(TLS_CACHE, name);
    const load = async (): Promise<Tls | undefined> => {
      try {
        const [caPem, cert, key] = await Promise.all([readFile(file('ca.pem'), 'utf8'), readFile(file('server.pem'), 'utf8'), readFile(file('server.key'), 'utf8')]);
        return { caPem, cert, key };
      } catch {
        return undefined;
      }
    };
    let tls = await load();
    if (!tls) {
      const staging = await mkdtemp(`${TLS_CACHE}.staging-`);
      try {
        await makeTestCa(staging);
        await rename(staging, TLS_CACHE);
      } catch (error) {
        await rm(staging, { recursive: true, force: true });
        // Another process made it first (rename onto a non-empty dir fails): use theirs.
        if (!['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
      }
      tls = await load();
      if (!tls) throw new Error(`incomplete test CA in ${TLS_CACHE}: remove it`);
    }
    return tls;
  })();
  return tlsMaterial;
}

// --- documents -------------------------------------------------------------------------------

function esc(value: string): string {
  return value.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A <User> as Finesse documents it (cx-platforms.md section 2), with the fields a desktop sees. */
export function finesseUserXml(user: Omit<FinesseStandInUser, 'password'>): string {
  const el = (name: string, value: string | undefined) => (value === undefined ? `<${name}/>` : `<${name}>${esc(value)}</${name}>`);
  const uri = `/finesse/api/User/${esc(user.loginId)}`;
  const teams = user.supervisedTeams ?? [];
  return [
    '<User>',
    `<uri>${uri}</uri>`,
    `<roles>${(user.roles ?? ['Agent']).map((r) => `<role>${r}</role>`).join('')}</roles>`,
    el('loginId', user.loginId),
    el('loginName', user.loginName),
    '<state>LOGOUT</state>',
    '<stateChangeTime>2026-01-15T09:30:00.000Z</stateChangeTime>',
    '<pendingState/>',
    '<reasonCodeId>-1</reasonCodeId>',
    '<ReasonCode><category>NOT_READY</category><code>32760</code><label>Logged Out</label><id>-1</id><uri>/finesse/api/ReasonCode/-1</uri></ReasonCode>',
    '<settings><wrapUpOnIncoming>OPTIONAL</wrapUpOnIncoming></settings>',
    el('extension', user.extension),
    '<mobileAgent><mode/><dialNumber/></mobileAgent>',
    el('firstName', user.firstName),
    el('lastName', user.lastName),
    el('teamId', user.teamId),
    el('teamName', user.teamName),
    '<skillTargetId>5001</skillTargetId>',
    `<dialogs>${uri}/Dialogs</dialogs>`,
    teams.length === 0 ? '<teams/>' : `<teams>${teams.map((t) => `<Team><uri>/finesse/api/Team/${esc(t.id)}</uri><id>${esc(t.id)}</id><name>${esc(t.name)}</name></Team>`).join('')}</teams>`,
    '</User>',
  ].join('');
}

const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>';

// --- the server ------------------------------------------------------------------------------

/** A loopback port nobody listens on (a dead Finesse). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A TCP listener that accepts connections and never says a word (not even a TLS handshake):
 * a hung server, for connect timeouts.
 */
export async function startSilentServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type Credentials = { username: string; password: string } | undefined;

function basicCredentials(header: string): Credentials {
  const encoded = /^Basic\s+(.+)$/i.exec(header)?.[1];
  if (!encoded) return undefined;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export async function startFinesse(options: FinesseStandInOptions = {}): Promise<FinesseStandIn> {
  const tls = await finesseTestTls();
  const users = new Map<string, FinesseStandInUser>();
  const teams = new Map<string, { id: string; name: string }>();
  const bearers = new Map<string, string>();
  const timers = new Set<NodeJS.Timeout>();

  const findUser = (id: string): FinesseStandInUser | undefined =>
    users.get(id) ?? [...users.values()].find((u) => u.loginName.toLowerCase() === id.toLowerCase());

  const standIn: FinesseStandIn = {
    url: '',
    port: 0,
    caPem: tls.caPem,
    users,
    teams,
    adminUsername: options.adminUsername ?? 'finesse-admin',
    adminPassword: options.adminPassword ?? `Admin-${randomBytes(6).toString('hex')}`,
    mode: options.mode ?? 'normal',
    slowMs: options.slowMs ?? 30_000,
    requests: [],
    addUser(user) {
      users.set(user.loginId, user);
      return user;
    },
    addTeam(team) {
      teams.set(team.id, team);
    },
    issueBearer(loginId) {
      if (!users.has(loginId)) throw new Error(`no Finesse user ${loginId}`);
      const token = randomBytes(32).toString('base64url');
      bearers.set(token, loginId);
      return token;
    },
    revokeBearer(token) {
      bearers.delete(token);
    },
    userXml(loginId) {
      const user = users.get(loginId);
      if (!user) throw new Error(`no Finesse user ${loginId}`);
      return finesseUserXml(user);
    },
    stop: async () => {},
  };

  const isAdmin = (credentials: Credentials): boolean =>
    credentials !== undefined && credentials.username === standIn.adminUsername && credentials.password === standIn.adminPassword;

  /** Status and body of a request in normal mode. */
  const answer = (method: string, pathname: string, authorization: string): { status: number; body: string } => {
    if (method !== 'GET') return { status: 405, body: '' };
    const basic = basicCredentials(authorization);
    const bearer = /^Bearer\s+(\S+)$/i.exec(authorization)?.[1];
    if (!basic && !bearer) return { status: 401, body: '' };
    if (pathname === '/finesse/api/Users' || pathname === '/finesse/api/Teams') {
      if (!isAdmin(basic)) return { status: 401, body: '' };
      const body = pathname.endsWith('Users')
        ? `<Users>${[...users.values()].map((u) => finesseUserXml(u)).join('')}</Users>`
        : `<Teams>${[...teams.values()].map((t) => `<Team><uri>/finesse/api/Team/${esc(t.id)}</uri><id>${esc(t.id)}</id><name>${esc(t.name)}</name></Team>`).join('')}</Teams>`;
      return { status: 200, body: XML_DECLARATION + body };
    }
    const match = /^\/finesse\/api\/User\/([^/]+)$/.exec(pathname);
    if (!match) return { status: 404, body: '' };
    let id: string;
    try {
      id = decodeURIComponent(match[1]!);
    } catch {
      return { status: 400, body: '' };
    }
    const user = findUser(id);
    if (!user) return { status: 404, body: '' };
    const own = basic !== undefined && (basic.username === user.loginId || basic.username.toLowerCase() === user.loginName.toLowerCase()) && basic.password === user.password;
    const token = bearer !== undefined && bearers.get(bearer) === user.loginId;
    if (!own && !token && !isAdmin(basic)) return { status: 401, body: '' };
    return { status: 200, body: XML_DECLARATION + finesseUserXml(user) };
  };

  const server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const authorization = req.headers.authorization ?? '';
    const basic = basicCredentials(authorization);
    const scheme = authorization === '' ? 'none' : basic ? 'basic' : /^Bearer\s/i.test(authorization) ? 'bearer' : 'other';
    const pathname = (req.url ?? '/').split('?')[0]!;
    const record = (status: number) => standIn.requests.push({
      method: req.method ?? 'GET', path: req.url ?? '/', auth: scheme, ...(basic ? { username: basic.username } : {}), status,
    });
    const send = (status: number, body: string) => {
      record(status);
      res.statusCode = status;
      if (status === 401) res.setHeader('www-authenticate', 'Basic realm="Finesse"');
      if (body) res.setHeader('content-type', 'application/xml');
      res.end(body);
    };
    switch (standIn.mode) {
      case 'down-5xx':
        send(503, '');
        return;
      case 'broken-xml':
        send(200, `${XML_DECLARATION}<User><uri>/finesse/api/User/1</uri><roles><role>Agent</ro`);
        return;
      case 'slow': {
        const { status, body } = answer(req.method ?? 'GET', pathname, authorization);
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!res.destroyed) send(status, body);
        }, standIn.slowMs);
        timers.add(timer);
        return;
      }
      default: {
        const { status, body } = answer(req.method ?? 'GET', pathname, authorization);
        send(status, body);
      }
    }
  });
  server.on('tlsClientError', () => { /* clients without the CA: their failure, not ours */ });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  standIn.port = port;
  standIn.url = `https://127.0.0.1:${port}`;
  let stopped: Promise<void> | undefined;
  standIn.stop = () => {
    stopped ??= (async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    })();
    return stopped;
  };
  return standIn;
}
