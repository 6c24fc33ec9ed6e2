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
