// Validate a signed file with c2pa-ts (TrustNXT's pure TypeScript C2PA implementation, independent
// of c2pa-rs) and print one JSON document: the validation result and the active manifest's
// assertions as c2pa-ts read them. Usage: node validate.mjs FILE
import * as fs from 'node:fs/promises';
import { JPEG, PNG } from '@trustnxt/c2pa-ts/asset';
import { SuperBox } from '@trustnxt/c2pa-ts/jumbf';
import { ManifestStore } from '@trustnxt/c2pa-ts/manifest';

const buf = await fs.readFile(process.argv[2]);
const asset = JPEG.canRead(buf) ? new JPEG(buf) : PNG.canRead(buf) ? new PNG(buf) : null;
if (!asset) { console.log(JSON.stringify({ error: 'unknown format' })); process.exit(2); }
const jumbf = asset.getManifestJUMBF();
if (!jumbf) { console.log(JSON.stringify({ error: 'no manifest' })); process.exit(1); }
const store = ManifestStore.read(SuperBox.fromBuffer(jumbf));
const result = await store.validate(asset);
const active = store.getActiveManifest();
const assertions = (active?.assertions?.assertions ?? []).map((a) => ({
  label: a.label ?? a.fullLabel, type: a.constructor?.name,
  actions: a.actions?.map((x) => x.action),
}));
console.log(JSON.stringify({
  isValid: result.isValid,
  statusEntries: result.statusEntries.map((e) => ({ code: e.code, success: e.success, url: e.url })),
  label: active?.label, assertions,
}));
