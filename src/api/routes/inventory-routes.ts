/**
 * Inventory edits (validated as the config file is, persisted, applied at once):
 *   GET    /v1/inventory
 *   PUT    /v1/servers/:name | /v1/transits/:name | /v1/accounts/:name   (the entry in the config's form)
 *   DELETE /v1/servers/:name | /v1/transits/:name | /v1/accounts/:name
 */
import { Router, type Request } from 'express';
import type { InventoryKind } from '../../config/config.js';
import { HOST_NAME } from '../../core/inventory.js';
import { InventoryError, type InventoryService } from '../../controller/inventory-service.js';
import { ApiError, routeWith } from '../errors.js';
import { assertShallow, describeValue } from '../json-body.js';

export function inventoryRoutes(svc: InventoryService): Router {
  const r = Router();
  const wrap = routeWith((err) => (err instanceof InventoryError ? new ApiError(err.code as never, err.message, err.status, err.problems ? { problems: err.problems } : undefined) : err));
  const name = (req: Request) => {
    const v = req.params.name;
    if (typeof v !== 'string' || !HOST_NAME.test(v)) throw new ApiError('BAD_REQUEST', `name ${describeValue(v)} is not a valid name`, 400);
    return v;
  };
  r.get('/inventory', wrap((_req, res) => {
    res.json(svc.list());
  }));
  for (const kind of ['servers', 'transits', 'accounts'] as InventoryKind[]) {
    r.put(`/${kind}/:name`, wrap(async (req, res) => {
      const n = name(req);
      // the entry is validated as the config file is (recursively): bound its depth first
      assertShallow(req.body);
      const b = req.body as Record<string, unknown> | undefined;
      if (b && typeof b === 'object' && !Array.isArray(b) && b.name !== undefined && typeof b.name !== 'string') {
        throw new ApiError('BAD_REQUEST', `name: must be a string, not ${describeValue(b.name)}`, 400);
      }
      const created = await svc.put(kind, n, req.body);
      res.status(created ? 201 : 200).json((svc.list()[kind] as { name: string }[]).find((x) => x.name === n));
    }));
    r.delete(`/${kind}/:name`, wrap(async (req, res) => {
      await svc.remove(kind, name(req));
      res.status(204).end();
    }));
  }
  return r;
}
