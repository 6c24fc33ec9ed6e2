// Reading an answer from a server we do not control (upstream identity providers, Cisco Finesse)
// without letting it make us buffer without bound: a declared length over the limit is refused
// before reading, and the stream is cut off as soon as it passes the limit.

/** What we need of a fetch Response (the global one and undici's alike). */
type StreamedResponse = {
  headers: { get(name: string): string | null };
  body: { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(): Promise<void> }; cancel(): Promise<void> } | null;
};

/** The body, or undefined when it is larger than `limit` bytes (the rest is not read). */
export async function readBoundedBody(response: StreamedResponse, limit: number): Promise<Buffer | undefined> {
  const declared = Number(response.headers.get('content-length') ?? '');
  if (Number.isFinite(declared) && declared > limit) {
    await response.body?.cancel().catch(() => {});
    return undefined;
  }
  if (!response.body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done || !value) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
