// Request bodies (form, JSON, text) for the endpoints Cloakroom serves itself (oidc-provider
// parses its own).
import { IncomingMessage } from 'node:http';
import querystring from 'node:querystring';

import type { Context } from 'koa';

export class BodyError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** oidc-provider's limit, so every protocol endpoint refuses the same sizes. */
export const FORM_LIMIT = 56 * 1024;

/** The raw body, refusing more than `limit` bytes (declared or received) with 413. */
export async function readBytes(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number.parseInt(req.headers['content-length'] ?? '', 10);
  if (declared > limit) throw new BodyError(413, 'request entity too large');
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of req) {
    received += (chunk as Buffer).length;
    if (received > limit) throw new BodyError(413, 'request entity too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A parsed form's parameters; a parameter given twice is ambiguous and refused (RFC 6749 3.1). */
export function singleValued(parsed: querystring.ParsedUrlQuery): Record<string, unknown> {
  for (const [name, value] of Object.entries(parsed)) {
    if (Array.isArray(value)) throw new BodyError(400, `'${name}' parameter must not be provided twice`);
  }
  return parsed as Record<string, unknown>;
}

/** A form-encoded body's parameters, each given once. */
export function parseForm(raw: Buffer): Record<string, unknown> {
  return singleValued(querystring.parse(raw.toString('utf8')));
}

export async function readForm(ctx: Context, limit = FORM_LIMIT): Promise<Record<string, unknown>> {
  if (!ctx.is('application/x-www-form-urlencoded')) {
    throw new BodyError(400, 'only application/x-www-form-urlencoded content-type bodies are supported');
  }
  return parseForm(await readBytes(ctx.req, limit));
}

/** A JSON body (any JSON value); 400 when it is not JSON, 413 beyond `limit` bytes. */
export async function readJson(ctx: Context, limit: number): Promise<unknown> {
  if (!ctx.is('application/json', '+json')) {
    throw new BodyError(415, 'a JSON body (content-type application/json) is required');
  }
  const text = (await readBytes(ctx.req, limit)).toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    throw new BodyError(400, 'the body is not valid JSON');
  }
}

/** A text/plain body (Keycloak takes a few values that way, e.g. a credential's label). */
export async function readText(ctx: Context, limit: number): Promise<string> {
  return (await readBytes(ctx.req, limit)).toString('utf8');
}

/**
 * A stand-in for a request whose body was already read: the same socket, method, URL and headers,
 * replaying the body, so oidc-provider parses it exactly as it would have.
 */
export function replayRequest(req: IncomingMessage, body: Buffer): IncomingMessage {
  const replay = new IncomingMessage(req.socket);
  replay.method = req.method!;
  replay.url = req.url!;
  replay.headers = req.headers;
  replay.rawHeaders = req.rawHeaders;
  replay.httpVersion = req.httpVersion;
  replay.httpVersionMajor = req.httpVersionMajor;
  replay.httpVersionMinor = req.httpVersionMinor;
  replay.complete = true;
  if (body.length > 0) replay.push(body);
  replay.push(null);
  return replay;
}
