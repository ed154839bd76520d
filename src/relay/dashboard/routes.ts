import type { FastifyInstance, FastifyReply } from 'fastify';
import { type DashboardAsset, dashboardAssets } from './assets.js';

/**
 * The operator's dashboard: the page at `/`, its files under `/dashboard/`. The page reads
 * /v1/status, /v1/status/history and /v1/descriptor from the same origin and loads nothing
 * from anywhere else, which the policy below enforces in the browser (a relay's page must not
 * leak its operator to a CDN, and must not run injected script).
 */

export const DASHBOARD_PREFIX = '/dashboard/';

const HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Revalidate each load, so a relay upgrade never pairs a new page with old scripts.
  'cache-control': 'no-cache',
};

export function registerDashboard(
  app: FastifyInstance,
  assets: ReadonlyMap<string, DashboardAsset> = dashboardAssets(),
): void {
  const send = (reply: FastifyReply, asset: DashboardAsset) =>
    reply.headers(HEADERS).type(asset.contentType).send(asset.body);
  const index = assets.get('index.html');
  if (!index) throw new Error('dashboard: index.html missing');

  app.get('/', (_request, reply) => send(reply, index));
  // The name is only a key into the loaded files: nothing from the URL reaches the disk.
  app.get<{ Params: { file: string } }>(`${DASHBOARD_PREFIX}:file`, (request, reply) => {
    const { file } = request.params;
    const asset = file === 'index.html' ? undefined : assets.get(file);
    return asset ? send(reply, asset) : reply.callNotFound();
  });
}
