#!/usr/bin/env node
// Node 22.18+/24 run the TypeScript sources directly (type stripping): no build step.
await import('../src/main.ts');
