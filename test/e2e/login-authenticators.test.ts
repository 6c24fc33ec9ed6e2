// Login authenticators end to end in headless Chromium: a strict authenticator with HOTP on one
// group and a lenient one without MFA on another, TOTP enrollment read off the page, HOTP with a
// token that ran ahead, a forced password change on expiry, password reset through a real SMTP
// server, lockout and unlock. OTP codes are computed here with node:crypto (RFC 4226/6238), not
// with Cloakroom's own code.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { chromiumAvailable, launchChromium, recordPage } from '../support/browser.ts';
import { startMailServer, type MailServer } from '../support/mail.ts';
import { postForm } from '../support/server.ts';

const REALM = 'contact-center';
const CLIENT = 'agent-desktop';

function base32Decode(input: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const char of input.replace(/[\s=]/g, '').toUpperCase()) bits += alphabet.indexOf(char).toString(2).padStart(5, '0');
  const bytes: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** RFC 4226 HOTP with SHA-1. */
function hotp(secretBase32: string, counter: number, digits = 6): string {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = crypto.createHmac('sha1', base32Decode(secretBase32)).update(message).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(binary).padStart(digits, '0');
}

/** RFC 6238 TOTP (SHA-1, 30 s) at a time step offset from now. */
const totp = (secretBase32: string, stepOffset = 0): string => hotp(secretBase32, Math.floor(Date.now() / 30_000) + stepOffset);

/** A callback endpoint for the application: answers 200 so the browser stops there. */
async function startApp(): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('app callback'); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

describe.skipIf(!chromiumAvailable('login authenticators e2e'))('login authenticators in Chromium', { timeout: 120_000 }, () => {
  let bench: AdminBench;
  let mail: MailServer;
  let app: { origin: string; close(): Promise<void> };
  let browser: Browser;
  let issuer: string;
  let strictId: string;
  const passwords: Record<string, string> = {
    sam: 'Supervisor#2026!', alex: 'agent', tina: 'Totp-user-2026', olga: 'Old-password-1', rita: 'Reset-me-please-1',
  };

  async function authenticatorId(name: string): Promise<string> {
    const list = await (await bench.api(`/${REALM}/login-authenticators`)).json() as { id: string; name: string }[];
    return list.find((a) => a.name === name)!.id;
  }

  beforeAll(async () => {
    mail = await startMailServer();
    app = await startApp();
    bench = await startAdminBench();
    issuer = `${bench.server.url}/realms/${REALM}`;
    const { admin } = bench;
    await admin.realms.create({
      realm: REALM, enabled: true, resetPasswordAllowed: true,
      // The realm default: passwords expire after a year (olga's is older).
      passwordPolicy: 'length(8) and forceExpiredPasswordChange(365)',
      smtpServer: mail.smtpServerSettings({ from: 'idp@cx.example' }),
    });
    await admin.clients.create({
      realm: REALM, clientId: CLIENT, publicClient: true, standardFlowEnabled: true, directAccessGrantsEnabled: true,
      redirectUris: [`${app.origin}/*`],
    });

    // Strict for supervisors: HOTP required, long passwords, 3 failures lock for 10 minutes.
    const strict = await bench.api(`/${REALM}/login-authenticators`, {
      method: 'POST',
      body: JSON.stringify({
        name: 'strict', mfa: 'hotp', otpPolicyLookAheadWindow: 5,
        passwordRules: { minLength: 12, minUpperCase: 1, minDigits: 1, minSpecialChars: 1 },
        bruteForceProtected: true, failureFactor: 3, quickLoginCheckMilliSeconds: 0, waitIncrementSeconds: 600, maxFailureWaitSeconds: 600,
      }),
    });
    expect(strict.status).toBe(201);
    strictId = await authenticatorId('strict');
    const lenient = await bench.api(`/${REALM}/login-authenticators`, {
      method: 'POST', body: JSON.stringify({ name: 'lenient', mfa: 'none', passwordPolicy: 'length(4)' }),
    });
    expect(lenient.status).toBe(201);

    for (const [group, authenticator] of [['supervisors', 'strict'], ['agents', 'lenient']] as const) {
      const { id } = await admin.groups.create({ realm: REALM, name: group });
      const assigned = await bench.api(`/${REALM}/groups/${id}/login-authenticator`, { method: 'PUT', body: JSON.stringify({ name: authenticator }) });
      expect(assigned.status).toBe(204);
    }
    const createUser = async (username: string, extra: Record<string, unknown> = {}): Promise<string> => {
      const { id } = await admin.users.create({
        realm: REALM, username, enabled: true, email: `${username}@cx.example`, emailVerified: true, firstName: username, lastName: 'Tester',
        credentials: [{ type: 'password', value: passwords[username]!, temporary: false }], ...extra,
      });
      return id;
    };
    await createUser('sam', { groups: ['/supervisors'] });
    await createUser('alex', { groups: ['/agents'] });
    await createUser('tina', { requiredActions: ['CONFIGURE_TOTP'] });
    await createUser('rita');
    // olga's password was set 400 days ago (a stored hash with its creation date, as an import brings it).
    const salt = crypto.randomBytes(16);
    const hash = crypto.pbkdf2Sync(passwords.olga!, salt, 27500, 64, 'sha256');
    await admin.users.create({
      realm: REALM, username: 'olga', enabled: true, email: 'olga@cx.example', firstName: 'Olga', lastName: 'Tester',
      credentials: [{
        type: 'password', createdDate: Date.now() - 400 * 86_400_000,
        secretData: JSON.stringify({ value: hash.toString('base64'), salt: salt.toString('base64'), additionalParameters: {} }),
        credentialData: JSON.stringify({ hashIterations: 27500, algorithm: 'pbkdf2-sha256', additionalParameters: {} }),
      }],
    });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await bench?.stop();
    await app?.close();
    await mail?.stop();
  });

  async function newPage(): Promise<{ context: BrowserContext; page: Page; record: ReturnType<typeof recordPage> }> {
    const context = await browser.newContext();
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    return { context, page, record: recordPage(page) };
  }

  /** Opens the authorization endpoint (PKCE S256) and returns the verifier. */
  async function startLogin(page: Page): Promise<string> {
    const verifier = crypto.randomBytes(32).toString('base64url');
    const url = new URL(`${issuer}/protocol/openid-connect/auth`);
    url.search = new URLSearchParams({
      client_id: CLIENT, response_type: 'code', scope: 'openid', redirect_uri: `${app.origin}/callback`, state: crypto.randomBytes(8).toString('hex'),
      code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
    }).toString();
    await page.goto(url.toString());
    return verifier;
  }

  async function enterPassword(page: Page, username: string, password: string): Promise<void> {
    await page.fill('#username', username);
    await page.click('#kc-login');
    await page.fill('#password', password);
    await page.click('#kc-login');
  }

  /** Waits for the application callback and exchanges its code; returns the access token claims. */
  async function expectSignedIn(page: Page, verifier: string, record: ReturnType<typeof recordPage>): Promise<Record<string, unknown>> {
    await page.waitForURL((u) => u.origin === app.origin, { timeout: 15_000 }).catch(async () => {
      throw new Error(`never reached the application:\n${record.dump()}\n${page.url()}\n${await page.textContent('#kc-content').catch(() => '')}`);
    });
    const code = new URL(page.url()).searchParams.get('code');
    expect(code, record.dump()).toBeTruthy();
    const response = await postForm(`${issuer}/protocol/openid-connect/token`, {
      grant_type: 'authorization_code', client_id: CLIENT, code: code!, redirect_uri: `${app.origin}/callback`, code_verifier: verifier,
    });
    expect(response.status).toBe(200);
    const body = await response.json() as { access_token: string };
    return JSON.parse(Buffer.from(body.access_token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  }

  const errorText = async (page: Page, selector = '.kc-field-error'): Promise<string> => (await page.textContent(selector)) ?? '';

  describe('a strict group with HOTP and a lenient group without MFA', () => {
    let samSecret: string;

    it('an agent of the lenient group signs in with a short password and no second factor', async () => {
      const { context, page, record } = await newPage();
      const verifier = await startLogin(page);
      await enterPassword(page, 'alex', passwords.alex!);
      const claims = await expectSignedIn(page, verifier, record);
      expect(claims.preferred_username).toBe('alex');
      await context.close();
    });

    it('a supervisor must enroll an HOTP device first; the code for counter 0 read off the page completes the login', async () => {
      const { context, page, record } = await newPage();
      const verifier = await startLogin(page);
      await enterPassword(page, 'sam', passwords.sam!);
      await page.waitForSelector('#kc-totp-secret-key');
      expect(await page.textContent('#kc-totp-type')).toContain('Counter-based');
      samSecret = (await page.textContent('#kc-totp-secret-key'))!.replace(/\s+/g, '');
      expect(samSecret).toMatch(/^[A-Z2-7]{32}$/);
      expect(await page.getAttribute('#kc-totp-secret-qr-code', 'src')).toMatch(/^data:image\/svg\+xml;base64,/);
      await page.fill('#totp', '000000' === hotp(samSecret, 0) ? '111111' : '000000');
      await page.click('#saveTOTPBtn');
      expect(await errorText(page)).toBe('Invalid authenticator code.');
      await page.fill('#totp', hotp(samSecret, 0));
      await page.fill('#userLabel', 'Sam hardware token');
      await page.click('#saveTOTPBtn');
      const claims = await expectSignedIn(page, verifier, record);
      expect(claims.preferred_username).toBe('sam');
      await context.close();
    });

    it('codes of a token that ran ahead are accepted within the look-ahead and resynchronise the counter; older counters are refused', async () => {
      const { context, page, record } = await newPage();
      const verifier = await startLogin(page);
      await enterPassword(page, 'sam', passwords.sam!);
      await page.waitForSelector('#otp');
      await page.fill('#otp', hotp(samSecret, 2));
      await page.click('#kc-login');
      // Stored counter 1, look-ahead 5: counter 2 is accepted (stored 3), then 6 (stored 7); 5 is behind.
      const claims = await expectSignedIn(page, verifier, record);
      expect(claims.preferred_username).toBe('sam');
      await context.close();

      const second = await newPage();
      const verifier2 = await startLogin(second.page);
      await enterPassword(second.page, 'sam', passwords.sam!);
      await second.page.waitForSelector('#otp');
      await second.page.fill('#otp', hotp(samSecret, 6));
      await second.page.click('#kc-login');
      await expectSignedIn(second.page, verifier2, second.record);
      await second.context.close();

      const third = await newPage();
      await startLogin(third.page);
      await enterPassword(third.page, 'sam', passwords.sam!);
      await third.page.waitForSelector('#otp');
      await third.page.fill('#otp', hotp(samSecret, 5));
      await third.page.click('#kc-login');
      expect(await errorText(third.page)).toBe('Invalid authenticator code.');
      await third.context.close();
    });

    it('the password grant applies the same authenticators: HOTP required for the supervisor, none for the agent', async () => {
      const token = (form: Record<string, string>) => postForm(`${issuer}/protocol/openid-connect/token`, { grant_type: 'password', client_id: CLIENT, scope: 'openid', ...form });
      expect((await token({ username: 'alex', password: passwords.alex! })).status).toBe(200);
      const withoutCode = await token({ username: 'sam', password: passwords.sam! });
      expect(withoutCode.status).toBe(401);
      expect(await withoutCode.json()).toEqual({ error: 'invalid_grant', error_description: 'Invalid user credentials' });
      const withCode = await token({ username: 'sam', password: passwords.sam!, totp: hotp(samSecret, 7) });
      expect(withCode.status).toBe(200);
      // The same code again is behind the counter now.
      expect((await token({ username: 'sam', password: passwords.sam!, totp: hotp(samSecret, 7) })).status).toBe(401);
    });

    it('password rules follow the authenticator: the admin reset is checked against the strict rules', async () => {
      const [sam] = await bench.admin.users.find({ realm: REALM, username: 'sam', exact: true });
      const weak = await bench.api(`/${REALM}/users/${sam!.id}/reset-password`, {
        method: 'PUT', body: JSON.stringify({ type: 'password', value: 'short', temporary: false }),
      });
      expect(weak.status).toBe(400);
      const [alex] = await bench.admin.users.find({ realm: REALM, username: 'alex', exact: true });
      const fine = await bench.api(`/${REALM}/users/${alex!.id}/reset-password`, {
        method: 'PUT', body: JSON.stringify({ type: 'password', value: 'abcd', temporary: false }),
      });
      expect(fine.status).toBe(204);
      passwords.alex = 'abcd';
      // CXone tells the user whenever the password changes, an administrator's reset included.
      await mail.waitFor((m) => m.to.includes('alex@cx.example') && /password was changed/i.test(m.subject));
    });
  });

  it('TOTP enrollment as a required action, then a login with a code from the enrolled secret', async () => {
    const { context, page, record } = await newPage();
    let verifier = await startLogin(page);
    await enterPassword(page, 'tina', passwords.tina!);
    await page.waitForSelector('#kc-totp-secret-key');
    expect(await page.textContent('#kc-totp-type')).toContain('Time-based');
    const secret = (await page.textContent('#kc-totp-secret-key'))!.replace(/\s+/g, '');
    await page.fill('#totp', totp(secret));
    await page.fill('#userLabel', 'Tina phone');
    await page.click('#saveTOTPBtn');
    await expectSignedIn(page, verifier, record);
    await context.close();

    const next = await newPage();
    verifier = await startLogin(next.page);
    await enterPassword(next.page, 'tina', passwords.tina!);
    await next.page.waitForSelector('#otp');
    // The enrollment code's time step is used up; the next step is inside the look-around window.
    await next.page.fill('#otp', totp(secret, 1));
    await next.page.click('#kc-login');
    await expectSignedIn(next.page, verifier, next.record);
    await next.context.close();

    const [tina] = await bench.admin.users.find({ realm: REALM, username: 'tina', exact: true });
    const credentials = await bench.admin.users.getCredentials({ realm: REALM, id: tina!.id! });
    expect(credentials.map((c) => [c.type, c.userLabel])).toContainEqual(['otp', 'Tina phone']);
  });

  it('an expired password must be changed at the next login, under the rules shown as a checklist', async () => {
    const { context, page, record } = await newPage();
    const verifier = await startLogin(page);
    await enterPassword(page, 'olga', passwords.olga!);
    await page.waitForSelector('#password-new');
    expect(await page.textContent('#kc-password-rules')).toContain('8');
    // The live checklist marks the length rule as met once the typed password is long enough
    // (its deferred script marks the list live when it has started listening).
    await page.waitForSelector('#kc-password-rules.kc-rules-live');
    await page.fill('#password-new', 'short');
    expect(await page.getAttribute('#kc-password-rules [data-rule="minLength"]', 'class')).toContain('kc-rule-unmet');
    await page.fill('#password-new', 'long enough now');
    expect(await page.getAttribute('#kc-password-rules [data-rule="minLength"]', 'class')).toContain('kc-rule-met');
    await page.fill('#password-new', 'short');
    await page.fill('#password-confirm', 'short');
    await page.click('#kc-submit');
    expect(await errorText(page)).toBe('Invalid password: minimum length 8.');
    await page.fill('#password-new', 'A-new-password-2026');
    await page.fill('#password-confirm', 'A-new-password-2026');
    await page.click('#kc-submit');
    await expectSignedIn(page, verifier, record);
    await context.close();
    passwords.olga = 'A-new-password-2026';

    const again = await newPage();
    const verifier2 = await startLogin(again.page);
    await enterPassword(again.page, 'olga', passwords.olga);
    await expectSignedIn(again.page, verifier2, again.record);
    await again.context.close();
  });

  it('forgot password: the e-mailed link sets a new password and the user is told by e-mail', async () => {
    const { context, page } = await newPage();
    await startLogin(page);
    await page.fill('#username', 'rita');
    await page.click('#kc-login');
    await page.click('#kc-forgot-password');
    await page.fill('#username', 'rita');
    await page.click('#kc-submit');
    expect(await page.textContent('#kc-content')).toContain('You should receive an email shortly');
    const resetMail = await mail.waitFor((m) => m.to.includes('rita@cx.example') && /reset/i.test(m.subject));
    const link = /https?:\/\/\S+action-token\?key=[\w-]+/.exec(resetMail.text)?.[0];
    expect(link, resetMail.text).toBeTruthy();
    await page.goto(link!);
    await page.fill('#password-new', 'Brand-new-secret-9');
    await page.fill('#password-confirm', 'Brand-new-secret-9');
    await page.click('#kc-submit');
    expect(await page.textContent('#kc-content')).toContain('Your password has been updated');
    await mail.waitFor((m) => m.to.includes('rita@cx.example') && /password was changed/i.test(m.subject));
    await context.close();

    const { context: c2, page: p2, record } = await newPage();
    const verifier = await startLogin(p2);
    await enterPassword(p2, 'rita', 'Brand-new-secret-9');
    await expectSignedIn(p2, verifier, record);
    await c2.close();
  });

  it('three wrong passwords lock a strict account (same message as a wrong password); an admin unlock lets it in', async () => {
    const { context, page } = await newPage();
    await startLogin(page);
    await page.fill('#username', 'sam');
    await page.click('#kc-login');
    for (let i = 0; i < 3; i++) {
      await page.fill('#password', `wrong-${i}`);
      await page.click('#kc-login');
      expect(await errorText(page)).toBe('Invalid username or password.');
    }
    await page.fill('#password', passwords.sam!);
    await page.click('#kc-login');
    expect(await errorText(page)).toBe('Invalid username or password.');

    const [sam] = await bench.admin.users.find({ realm: REALM, username: 'sam', exact: true });
    const status = await bench.admin.attackDetection.findOne({ realm: REALM, id: sam!.id! });
    expect(status).toMatchObject({ disabled: true, numFailures: 3 });
    await bench.admin.attackDetection.del({ realm: REALM, id: sam!.id! });

    await page.fill('#password', passwords.sam!);
    await page.click('#kc-login');
    await page.waitForSelector('#otp');
    await context.close();
    expect(strictId).toBeTruthy();
  });
});
