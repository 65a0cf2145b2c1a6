/**
 * The page at /ui: static files (plain ES modules, CSS, no build step) from the package's
 * `src/ui`, with a strict Content-Security-Policy (no inline script or style, nothing from
 * another origin), no caching and no token: every datum the page shows comes from /v1 with the
 * user's token.
 */
import express, { type Router } from 'express';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The headers of every /ui answer. */
export const UI_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    + "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

/** The page's directory: `src/ui` of the package, from src/api (ts-jest) or dist/src/api (the build). */
export function uiDir(): string {
  const candidates = ['../ui', '../../../src/ui'].map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
  return candidates.find((d) => existsSync(`${d}/index.html`)) ?? candidates[1];
}

/** The router to mount at /ui. */
export function uiRoutes(dir = uiDir()): Router {
  const r = express.Router();
  r.use((_req, res, next) => {
    res.set(UI_HEADERS);
    next();
  });
  r.use(express.static(dir, { index: 'index.html', redirect: true, dotfiles: 'ignore', etag: false, lastModified: false }));
  return r;
}
