// Form bodies for the endpoints Cloakroom serves itself (oidc-provider parses its own).
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

export async function readForm(ctx: Context, limit = FORM_LIMIT): Promise<Record<string, unknown>> {
  if (!ctx.is('application/x-www-form-urlencoded')) {
    throw new BodyError(400, 'only application/x-www-form-urlencoded content-type bodies are supported');
  }
  const declared = ctx.request.length;
  if (declared !== undefined && declared > limit) throw new BodyError(413, 'request entity too large');
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of ctx.req) {
    received += (chunk as Buffer).length;
    if (received > limit) throw new BodyError(413, 'request entity too large');
    chunks.push(chunk as Buffer);
  }
  const parsed = querystring.parse(Buffer.concat(chunks).toString('utf8'));
  // A parameter given twice is ambiguous; OAuth says reject it (RFC 6749 3.1).
  for (const [name, value] of Object.entries(parsed)) {
    if (Array.isArray(value)) throw new BodyError(400, `'${name}' parameter must not be provided twice`);
  }
  return parsed as Record<string, unknown>;
}

/** A JSON body (any JSON value); 400 when it is not JSON, 413 beyond `limit` bytes. */
export async function readJson(ctx: Context, limit: number): Promise<unknown> {
  if (!ctx.is('application/json', '+json')) {
    throw new BodyError(415, 'a JSON body (content-type application/json) is required');
  }
  const declared = ctx.request.length;
  if (declared !== undefined && declared > limit) throw new BodyError(413, 'request entity too large');
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of ctx.req) {
    received += (chunk as Buffer).length;
    if (received > limit) throw new BodyError(413, 'request entity too large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    throw new BodyError(400, 'the body is not valid JSON');
  }
}

/** A text/plain body (Keycloak takes a few values that way, e.g. a credential's label). */
export async function readText(ctx: Context, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of ctx.req) {
    received += (chunk as Buffer).length;
    if (received > limit) throw new BodyError(413, 'request entity too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
