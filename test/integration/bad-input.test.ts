// Hostile and malformed requests against a real server: every answer is an OAuth-style JSON error
// with a 4xx status, never a 500, and the server keeps working afterwards.
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { basicAuth, postForm, startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
let realmUrl: string;
let tokenUrl: string;
let introspectUrl: string;
const secret = 'svc-secret-0123456789';

beforeAll(async () => {
  server = await startTestServer();
  realmUrl = `${server.url}/realms/bad`;
  tokenUrl = `${realmUrl}/protocol/openid-connect/token`;
  introspectUrl = `${realmUrl}/protocol/openid-connect/token/introspect`;
  await server.importRealm({
    realm: 'bad',
    clients: [
      { clientId: 'svc', secret, serviceAccountsEnabled: true, standardFlowEnabled: false },
      { clientId: 'gateway', secret: 'gateway-secret', standardFlowEnabled: false },
    ],
  });
});

afterAll(async () => {
  await server?.stop();
});

type RawResponse = { status: number; headers: http.IncomingHttpHeaders; text: string };

/**
 * A request sent exactly as written: no URL normalization (fetch would resolve `..`), any Host
 * header, any body. Node's http client leaves the path alone.
 */
function raw(method: string, path: string, options: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: server.port, method, path,
      headers: { connection: 'close', ...options.headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    // The server may answer (and close) before an oversized body is fully written.
    req.on('error', reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

/** Bytes written straight to a socket: for requests no HTTP client will send. */
function rawSocket(request: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.port, '127.0.0.1', () => socket.end(request));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
  });
}

/** Every answer here: not a 5xx, JSON, with an `error` string. Returns the parsed body. */
async function errorJson(res: Response | RawResponse, status?: number | number[]): Promise<Record<string, unknown>> {
  const code = res.status;
  const contentType = res instanceof Response ? res.headers.get('content-type') : res.headers['content-type'];
  const text = res instanceof Response ? await res.text() : res.text;
  expect(code, `status (body: ${text.slice(0, 200)})`).toBeLessThan(500);
  expect(code).toBeGreaterThanOrEqual(400);
  if (status !== undefined) expect([status].flat()).toContain(code);
  expect(contentType, `content type (status ${code}, body: ${text.slice(0, 200)})`).toMatch(/^application\/json/);
  const body = JSON.parse(text) as Record<string, unknown>;
  expect(typeof body.error).toBe('string');
  if ('error_description' in body) expect(typeof body.error_description).toBe('string');
  return body;
}

describe('unknown realm', () => {
  const paths = [
    '/.well-known/openid-configuration',
    '/protocol/openid-connect/certs',
    '',
  ];
  for (const suffix of paths) {
    it(`answers 404 Realm does not exist on GET /realms/nope${suffix}`, async () => {
      const res = await fetch(`${server.url}/realms/nope${suffix}`);
      const body = await errorJson(res, 404);
      expect(body.error).toBe('Realm does not exist');
    });
  }

  it('answers 404 Realm does not exist on the token endpoint', async () => {
    const res = await postForm(`${server.url}/realms/nope/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('svc', secret) });
    expect((await errorJson(res, 404)).error).toBe('Realm does not exist');
  });

  it('answers 404 Realm does not exist on the introspection endpoint', async () => {
    const res = await postForm(`${server.url}/realms/nope/protocol/openid-connect/token/introspect`, { token: 'x' }, { authorization: basicAuth('svc', secret) });
    expect((await errorJson(res, 404)).error).toBe('Realm does not exist');
  });
});

describe('grant_type', () => {
  it('rejects an unsupported grant_type with unsupported_grant_type', async () => {
    const res = await postForm(tokenUrl, { grant_type: 'foo' }, { authorization: basicAuth('svc', secret) });
    expect((await errorJson(res, 400)).error).toBe('unsupported_grant_type');
  });

  it('rejects a missing grant_type with invalid_request', async () => {
    const res = await postForm(tokenUrl, {}, { authorization: basicAuth('svc', secret) });
    expect((await errorJson(res, 400)).error).toBe('invalid_request');
  });

  it('rejects grant_type given twice with invalid_request', async () => {
    const res = await fetch(tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth('svc', secret) },
      body: 'grant_type=client_credentials&grant_type=client_credentials',
    });
    const body = await errorJson(res, 400);
    expect(body.error).toBe('invalid_request');
    expect(String(body.error_description)).toContain('grant_type');
  });

  it('rejects a parameter given twice on introspection with invalid_request', async () => {
    const res = await fetch(introspectUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth('gateway', 'gateway-secret') },
      body: 'token=a&token=b',
    });
    const body = await errorJson(res, 400);
    expect(body.error).toBe('invalid_request');
    expect(String(body.error_description)).toContain('token');
  });

  it('rejects a resource parameter on client_credentials with invalid_target', async () => {
    const res = await postForm(tokenUrl, { grant_type: 'client_credentials', resource: 'https://api.example.com/' }, { authorization: basicAuth('svc', secret) });
    expect((await errorJson(res, 400)).error).toBe('invalid_target');
  });
});

describe('content type and body', () => {
  for (const [name, url, auth] of [
    ['token', () => tokenUrl, () => basicAuth('svc', secret)],
    ['introspection', () => introspectUrl, () => basicAuth('gateway', 'gateway-secret')],
  ] as const) {
    it(`rejects a JSON body on ${name} with invalid_request`, async () => {
      const res = await fetch(url(), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: auth() },
        body: JSON.stringify({ grant_type: 'client_credentials', token: 'x' }),
      });
      expect((await errorJson(res, 400)).error).toBe('invalid_request');
    });

    it(`rejects a text/plain body on ${name} with invalid_request`, async () => {
      const res = await fetch(url(), {
        method: 'POST',
        headers: { 'content-type': 'text/plain', authorization: auth() },
        body: 'grant_type=client_credentials&token=x',
      });
      expect((await errorJson(res, 400)).error).toBe('invalid_request');
    });

    it(`rejects a POST without a body or content type on ${name}`, async () => {
      const res = await raw('POST', new URL(url()).pathname, { headers: { authorization: auth() } });
      expect((await errorJson(res, 400)).error).toBe('invalid_request');
    });

    it(`refuses an oversized body (> 56 KiB) on ${name} without a 500`, async () => {
      const body = `grant_type=client_credentials&token=x&pad=${'a'.repeat(60 * 1024)}`;
      const res = await raw('POST', new URL(url()).pathname, {
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth(), 'content-length': String(Buffer.byteLength(body)) },
        body,
      });
      await errorJson(res, [400, 413]);
      // The server still answers.
      const ready = await fetch(`${server.url}/health/ready`);
      expect(ready.status).toBe(200);
    });

    it(`refuses an oversized chunked body (no content-length) on ${name} without a 500`, async () => {
      const body = `grant_type=client_credentials&token=x&pad=${'a'.repeat(60 * 1024)}`;
      const res = await raw('POST', new URL(url()).pathname, {
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth(), 'transfer-encoding': 'chunked' },
        body,
      });
      await errorJson(res, [400, 413]);
    });

    it(`survives a malformed urlencoded body on ${name}`, async () => {
      const res = await fetch(url(), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth() },
        body: '%%%&&==&grant_type=%ZZ&token=%E0%A4%A&=x',
      });
      await errorJson(res, [400, 401]);
    });

    it(`survives an unknown charset on ${name}`, async () => {
      const res = await fetch(url(), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded; charset=klingon', authorization: auth() },
        body: 'grant_type=foo&token=x',
      });
      const status = res.status;
      const text = await res.text();
      expect(status, text).toBeLessThan(500);
    });
  }
});

describe('client authentication', () => {
  const brokenHeaders = ['Basic !!!', 'Basic', `Basic ${Buffer.from('no-colon-here').toString('base64')}`, 'Bearer x', 'Basic %%%', `Basic ${Buffer.from('svc:%E0%A4%A').toString('base64')}`];

  for (const authorization of brokenHeaders) {
    it(`answers ${JSON.stringify(authorization)} on token with invalid_request or invalid_client`, async () => {
      const res = await postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization });
      const body = await errorJson(res, [400, 401]);
      expect(['invalid_request', 'invalid_client']).toContain(body.error);
    });

    it(`answers ${JSON.stringify(authorization)} on introspection with invalid_request or invalid_client`, async () => {
      const res = await postForm(introspectUrl, { token: 'x' }, { authorization });
      const body = await errorJson(res, [400, 401]);
      expect(['invalid_request', 'invalid_client']).toContain(body.error);
    });
  }

  it('answers a wrong secret and an unknown client with 401 invalid_client on token', async () => {
    for (const authorization of [basicAuth('svc', 'wrong'), basicAuth('nobody', 'x')]) {
      const res = await postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization });
      expect((await errorJson(res, 401)).error).toBe('invalid_client');
    }
    const res = await postForm(tokenUrl, { grant_type: 'client_credentials', client_id: 'svc', client_secret: 'wrong' });
    expect((await errorJson(res, 401)).error).toBe('invalid_client');
  });

  it('answers missing credentials on token with 400 invalid_request', async () => {
    const res = await postForm(tokenUrl, { grant_type: 'client_credentials' });
    expect((await errorJson(res, 400)).error).toBe('invalid_request');
  });

  it('answers a client_id without secret on token with invalid_client', async () => {
    const res = await postForm(tokenUrl, { grant_type: 'client_credentials', client_id: 'svc' });
    expect((await errorJson(res, 401)).error).toBe('invalid_client');
  });

  it('answers a wrong secret, unknown client and missing credentials with 401 invalid_client on introspection', async () => {
    for (const headers of [{ authorization: basicAuth('gateway', 'wrong') }, { authorization: basicAuth('nobody', 'x') }, {}] as Array<Record<string, string>>) {
      const res = await postForm(introspectUrl, { token: 'x' }, headers);
      expect((await errorJson(res, 401)).error).toBe('invalid_client');
    }
  });

  it('answers a client_id with a null byte without a 500 (token, Basic and body)', async () => {
    let res = await postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization: basicAuth('sv\u0000c', secret) });
    await errorJson(res, [400, 401]);
    res = await postForm(tokenUrl, { grant_type: 'client_credentials', client_id: 'sv\u0000c', client_secret: secret });
    await errorJson(res, [400, 401]);
  });

  it('answers a client_id with a null byte without a 500 (introspection, Basic and body)', async () => {
    let res = await postForm(introspectUrl, { token: 'x' }, { authorization: basicAuth('gate\u0000way', 'gateway-secret') });
    await errorJson(res, [400, 401]);
    res = await postForm(introspectUrl, { token: 'x', client_id: 'gate\u0000way', client_secret: 'gateway-secret' });
    await errorJson(res, [400, 401]);
  });

  it('answers null bytes in other parameters without a 500', async () => {
    let res = await postForm(tokenUrl, { grant_type: 'client_credentials', scope: 'profile\u0000email' }, { authorization: basicAuth('svc', secret) });
    expect(res.status, await res.text()).toBeLessThan(500);
    res = await postForm(tokenUrl, { grant_type: 'client_\u0000credentials' }, { authorization: basicAuth('svc', secret) });
    await errorJson(res, 400);
    res = await postForm(introspectUrl, { token: 'a\u0000b' }, { authorization: basicAuth('gateway', 'gateway-secret') });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ active: false });
  });

  it('rejects credentials given both in the header and the body', async () => {
    const res = await postForm(tokenUrl, { grant_type: 'client_credentials', client_id: 'svc', client_secret: secret }, { authorization: basicAuth('svc', secret) });
    expect((await errorJson(res, 400)).error).toBe('invalid_request');
    const res2 = await postForm(introspectUrl, { token: 'x', client_id: 'gateway', client_secret: 'gateway-secret' }, { authorization: basicAuth('gateway', 'gateway-secret') });
    expect((await errorJson(res2, 400)).error).toBe('invalid_request');
  });
});

describe('forged tokens on introspection', () => {
  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

  async function introspect(token: string): Promise<Record<string, unknown>> {
    const res = await postForm(introspectUrl, { token }, { authorization: basicAuth('gateway', 'gateway-secret') });
    expect(res.status).toBe(200);
    return await res.json() as Record<string, unknown>;
  }

  async function realToken(): Promise<{ token: string; header: Record<string, unknown>; claims: Record<string, unknown> }> {
    const res = await postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization: basicAuth('svc', secret) });
    const { access_token: token } = await res.json() as { access_token: string };
    const [h, p] = token.split('.');
    return { token, header: JSON.parse(Buffer.from(h!, 'base64url').toString()), claims: JSON.parse(Buffer.from(p!, 'base64url').toString()) };
  }

  it('answers active:false for alg none', async () => {
    const { header, claims } = await realToken();
    expect(await introspect(`${b64({ ...header, alg: 'none' })}.${b64(claims)}.`)).toEqual({ active: false });
  });

  it('answers active:false for HS256 signed with the realm public key (algorithm confusion)', async () => {
    const { header, claims } = await realToken();
    const info = await (await fetch(realmUrl)).json() as { public_key: string };
    const pem = `-----BEGIN PUBLIC KEY-----\n${info.public_key.match(/.{1,64}/g)!.join('\n')}\n-----END PUBLIC KEY-----\n`;
    for (const keyText of [pem, info.public_key]) {
      const input = `${b64({ ...header, alg: 'HS256' })}.${b64(claims)}`;
      const signature = crypto.createHmac('sha256', keyText).update(input).digest('base64url');
      expect(await introspect(`${input}.${signature}`)).toEqual({ active: false });
    }
  });

  it('answers active:false for a real signature over another payload, garbage and huge tokens', async () => {
    const { token, claims } = await realToken();
    const [h, , sig] = token.split('.');
    expect(await introspect(`${h}.${b64({ ...claims, exp: claims.exp as number + 3600 })}.${sig}`)).toEqual({ active: false });
    for (const garbage of ['a.b.c', '...', `${h}..`, 'eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA', `${h}.${'A'.repeat(40_000)}.${sig}`]) {
      expect(await introspect(garbage)).toEqual({ active: false });
    }
  });
});

describe('path tricks', () => {
  const discovery = '/.well-known/openid-configuration';

  it('refuses a raw .. segment', async () => {
    const res = await raw('GET', `/realms/x/../bad${discovery}`);
    await errorJson(res);
  });

  it('refuses a percent-encoded .. segment', async () => {
    for (const dots of ['%2e%2e', '%2E%2E', '.%2e']) {
      const res = await raw('GET', `/realms/x/${dots}/bad${discovery}`);
      await errorJson(res);
    }
  });

  it('does not mistake dot segments or encoded slashes in the query string for path tricks', async () => {
    for (const query of ['?x=/../', '?next=/a/%2e%2e/b', '?path=a%2Fb']) {
      const res = await raw('GET', `/realms/bad/protocol/openid-connect/certs${query}`);
      expect(res.status, `${query}: ${res.text}`).toBe(200);
      expect(JSON.parse(res.text)).toHaveProperty('keys');
    }
  });

  it('refuses %2F and %5C in the realm segment', async () => {
    for (const name of ['ba%2Fd', 'bad%2f..%2fmaster', 'ba%5Cd']) {
      const res = await raw('GET', `/realms/${name}${discovery}`);
      await errorJson(res);
    }
  });

  it('refuses a realm name with a null byte', async () => {
    const res = await raw('GET', `/realms/bad%00${discovery}`);
    await errorJson(res);
    const token = await raw('POST', '/realms/b%00ad/protocol/openid-connect/token', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth('svc', secret) },
      body: 'grant_type=client_credentials',
    });
    await errorJson(token);
  });

  it('refuses a realm name that is not valid percent-encoding or UTF-8', async () => {
    for (const name of ['%zz', '%E0%A4%A', '%C3%28', '%FF']) {
      const res = await raw('GET', `/realms/${name}${discovery}`);
      await errorJson(res);
    }
  });

  it('answers a 10 KB realm name with a 4xx JSON error', async () => {
    const res = await raw('GET', `/realms/${'r'.repeat(10 * 1024)}${discovery}`);
    await errorJson(res);
    const encoded = await raw('GET', `/realms/${'%C3%A9'.repeat(1700)}${discovery}`);
    await errorJson(encoded);
  });

  it('answers unknown paths under a realm with 404 JSON', async () => {
    for (const rest of ['/nope', '/protocol/nope', '/protocol/openid-connect/nope', '/protocol/saml', '/.well-known/nope', '/account/deep/path']) {
      const res = await fetch(`${realmUrl}${rest}`);
      await errorJson(res, 404);
    }
  });

  it('answers unknown top-level paths with 404 JSON', async () => {
    for (const p of ['/', '/nope', '/realms', '/realms/', '/admin/nope', '/health/nope']) {
      const res = await raw('GET', p);
      await errorJson(res, 404);
    }
  });

  it('answers Admin API paths without a token with 401 JSON, as Keycloak', async () => {
    for (const p of ['/admin/realms', '/admin/realms/bad', '/admin/realms/bad/users']) {
      const res = await raw('GET', p);
      await errorJson(res, 401);
    }
  });
});

describe('methods', () => {
  it('answers GET on introspection with 405 JSON', async () => {
    const res = await fetch(introspectUrl);
    expect((await errorJson(res, 405)).error).toBe('invalid_request');
  });

  it('answers GET on token without a 500', async () => {
    const res = await fetch(tokenUrl);
    await errorJson(res, [404, 405]);
  });

  it('answers PUT and DELETE on token and introspection without a 500', async () => {
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      for (const url of [tokenUrl, introspectUrl]) {
        const res = await fetch(url, { method, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
        await errorJson(res, [404, 405]);
      }
    }
  });

  it('answers HEAD and OPTIONS on discovery without a 500', async () => {
    const head = await fetch(`${realmUrl}/.well-known/openid-configuration`, { method: 'HEAD' });
    expect(head.status).toBeLessThan(500);
    const options = await fetch(`${realmUrl}/.well-known/openid-configuration`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' },
    });
    expect(options.status).toBeLessThan(500);
    await options.arrayBuffer();
  });

  it('answers POST on realm info with 405 JSON', async () => {
    const res = await fetch(realmUrl, { method: 'POST' });
    await errorJson(res, 405);
  });
});

describe('Host header', () => {
  it('refuses a malformed Host header with 400 when KC_HOSTNAME is not set', async () => {
    // (An empty Host cannot be sent with http.request: it substitutes its own; see the raw socket test.)
    for (const host of ['evil host', 'evil.example.com/path', 'a@b', 'évil.example.com', 'host:99999999']) {
      const res = await raw('GET', '/realms/bad/.well-known/openid-configuration', { headers: { host } });
      const body = await errorJson(res, 400);
      expect(body.error).toBe('invalid_request');
    }
  });

  it('refuses an empty Host (HTTP/1.1) and a missing Host (HTTP/1.0) without a 500', async () => {
    for (const head of ['GET /realms/bad/.well-known/openid-configuration HTTP/1.1\r\nHost: \r\n', 'GET /realms/bad/.well-known/openid-configuration HTTP/1.0\r\n']) {
      const res = await rawSocket(`${head}Connection: close\r\n\r\n`);
      expect(res.status, res.text).toBe(400);
      expect(res.text).toMatch(/\r\ncontent-type: application\/json/i);
      expect(JSON.parse(res.text.slice(res.text.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'invalid_request' });
    }
  });

  it('refuses a malformed Host header on the token endpoint', async () => {
    const res = await raw('POST', '/realms/bad/protocol/openid-connect/token', {
      headers: { host: 'evil host', 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth('svc', secret) },
      body: 'grant_type=client_credentials',
    });
    expect((await errorJson(res, 400)).error).toBe('invalid_request');
  });

  it('ignores X-Forwarded-* headers when KC_PROXY_HEADERS is not set', async () => {
    const res = await raw('GET', '/realms/bad/.well-known/openid-configuration', {
      headers: { 'x-forwarded-proto': 'javascript', 'x-forwarded-host': 'evil host' },
    });
    expect(res.status).toBe(200);
    expect((JSON.parse(res.text) as { issuer: string }).issuer).toBe(realmUrl);
  });
});

describe('afterwards', () => {
  it('is still ready and still issues tokens', async () => {
    const ready = await fetch(`${server.url}/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'UP' });
    const res = await postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization: basicAuth('svc', secret) });
    expect(res.status).toBe(200);
    const body = await res.json() as { access_token: string };
    expect(body.access_token.split('.')).toHaveLength(3);
    const introspected = await postForm(introspectUrl, { token: body.access_token }, { authorization: basicAuth('gateway', 'gateway-secret') });
    expect(await introspected.json()).toMatchObject({ active: true, client_id: 'svc' });
  });
});
