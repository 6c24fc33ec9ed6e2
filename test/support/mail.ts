// A real SMTP server for tests (smtp-server, in-process, random loopback port): it keeps every
// message it receives, parsed with mailparser. Authentication is optional and any user/password
// is accepted (and recorded), unless `credentials` asks for exactly one pair or `xoauth2` for
// XOAUTH2 with a token it accepts.
import type { AddressInfo } from 'node:net';

import { simpleParser, type AddressObject } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export type ReceivedMail = {
  /** The From header, e.g. `"Demo Realm" <noreply@example.com>`. */
  from: string;
  /** Envelope recipients. */
  to: string[];
  subject: string;
  text: string;
  html: string;
  raw: string;
  /** Envelope sender (MAIL FROM). */
  envelopeFrom: string;
  /** The user that authenticated for this message, if any. */
  authUser?: string;
};

export type MailServer = {
  port: number;
  host: '127.0.0.1';
  messages: ReceivedMail[];
  /** Every AUTH attempt (user and password, or the XOAUTH2 access token as password), accepted or not. */
  logins: { user: string; password: string; method: string }[];
  /** The first received message (already received or still to come) matching `predicate`. */
  waitFor(predicate: (m: ReceivedMail) => boolean, timeoutMs?: number): Promise<ReceivedMail>;
  /** Keycloak's realm smtpServer map pointing here (string values), with `extra` merged over it. */
  smtpServerSettings(extra?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
};

export type MailServerOptions = {
  /** Accept only this user and password (AUTH then required); default: any, AUTH optional. */
  credentials?: { user: string; password: string };
  /** Require XOAUTH2 (the only method then): `accepts` decides on each user and access token. */
  xoauth2?: { accepts(user: string, accessToken: string): boolean };
};

const addressText = (value: AddressObject | AddressObject[] | undefined): string =>
  value === undefined ? '' : Array.isArray(value) ? value.map((v) => v.text).join(', ') : value.text;

export async function startMailServer(options: MailServerOptions = {}): Promise<MailServer> {
  const messages: ReceivedMail[] = [];
  const logins: { user: string; password: string; method: string }[] = [];
  const waiters = new Set<{ predicate: (m: ReceivedMail) => boolean; resolve: (m: ReceivedMail) => void }>();

  const server = new SMTPServer({
    logger: false,
    allowInsecureAuth: true,
    authOptional: options.credentials === undefined && options.xoauth2 === undefined,
    authMethods: options.xoauth2 ? ['XOAUTH2'] : ['PLAIN', 'LOGIN'],
    size: 10 * 1024 * 1024,
    closeTimeout: 500,
    onAuth(auth, _session, callback) {
      const user = auth.username ?? '';
      if (auth.method === 'XOAUTH2') {
        const token = auth.accessToken ?? '';
        logins.push({ user, password: token, method: 'XOAUTH2' });
        // smtp-server's XOAUTH2 refusal: a JSON challenge (RFC 7628), then 535.
        if (!options.xoauth2?.accepts(user, token)) callback(null, { data: { status: '401', schemes: 'bearer', scope: 'smtp' } });
        else callback(null, { user });
        return;
      }
      const password = auth.password ?? '';
      logins.push({ user, password, method: auth.method });
      const wanted = options.credentials;
      if (wanted && (wanted.user !== user || wanted.password !== password)) {
        callback(new Error('Invalid username or password'));
        return;
      }
      callback(null, { user });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', callback);
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        simpleParser(raw).then((parsed) => {
          const mailFrom = session.envelope.mailFrom;
          const mail: ReceivedMail = {
            from: addressText(parsed.from),
            to: session.envelope.rcptTo.map((r) => r.address),
            subject: parsed.subject ?? '',
            text: parsed.text ?? '',
            html: typeof parsed.html === 'string' ? parsed.html : '',
            raw,
            envelopeFrom: mailFrom === false ? '' : mailFrom.address,
            ...(typeof session.user === 'string' ? { authUser: session.user } : {}),
          };
          messages.push(mail);
          for (const waiter of waiters) {
            if (waiter.predicate(mail)) {
              waiters.delete(waiter);
              waiter.resolve(mail);
            }
          }
          callback();
        }, (error: Error) => callback(error));
      });
    },
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => { /* client errors (dropped connections) are not the test's concern */ });
  const { port } = server.server.address() as AddressInfo;

  return {
    port,
    host: '127.0.0.1',
    messages,
    logins,
    waitFor(predicate, timeoutMs = 10_000) {
      const found = messages.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (m: ReceivedMail) => {
            clearTimeout(timer);
            resolve(m);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching e-mail within ${timeoutMs} ms (${messages.length} received)`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    smtpServerSettings(extra = {}) {
      return { host: '127.0.0.1', port: String(port), from: 'noreply@cloakroom.test', fromDisplayName: 'Cloakroom', ssl: 'false', starttls: 'false', auth: 'false', ...extra };
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
