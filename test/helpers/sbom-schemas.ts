// Test helper: validators for SBOM documents. CycloneDX 1.6 uses the official JSON schema that
// the @cyclonedx/cyclonedx-library dev dependency ships (res/schema); SPDX 2.3 uses kiln's zod
// rendering of the SPDX JSON schema (src/sbom/spdx-schema.ts), as no package ships that schema.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';

export { validateSpdx } from '../../src/sbom/spdx-schema.ts';

const require = createRequire(import.meta.url);
const schemaDir = join(dirname(require.resolve('@cyclonedx/cyclonedx-library/package.json')), 'res/schema');

/** cyclonedxValidator compiles the official CycloneDX 1.6 JSON schema (shipped by the CycloneDX library). */
export function cyclonedxValidator(): (doc: unknown) => string[] {
  const ajv = new Ajv({ strict: false, allErrors: true, logger: false });
  (addFormatsModule as unknown as (a: Ajv) => void)(ajv);
  const load = (f: string) => JSON.parse(readFileSync(join(schemaDir, f), 'utf8')) as Record<string, unknown>;
  ajv.addSchema(load('spdx.SNAPSHOT.schema.json'), 'http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json');
  ajv.addSchema(
    load('jsf-0.82.SNAPSHOT.schema.json'),
    'http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json',
  );
  ajv.addSchema(
    load('cryptography-defs.SNAPSHOT.schema.json'),
    'http://cyclonedx.org/schema/cryptography-defs.SNAPSHOT.schema.json',
  );
  const validate = ajv.compile(load('bom-1.6.SNAPSHOT.schema.json'));
  return (doc: unknown): string[] =>
    validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}
