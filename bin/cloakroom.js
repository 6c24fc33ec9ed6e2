#!/usr/bin/env node
// Node 22.18+/24 run the TypeScript sources directly (type stripping): no build step.
// The compile cache (in the OS temp directory) keeps the stripped and compiled modules between
// runs, which halves a command's start-up; where it cannot be written, Node runs without it.
import module from 'node:module';

module.enableCompileCache?.();
await import('../src/main.ts');
