// Bundles tests/web/vector-entry.ts (the web client's envelope code) with Vite and runs
// the envelope test vectors through it. `node vectors.mjs` runs them in Node's WebCrypto;
// drive.mjs runs the same bundle in Chromium.

import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, "../..");
const WEB = path.join(ROOT, "web");

export function loadVectors() {
  const file = path.join(ROOT, "tests/unit/envelope_vectors.json");
  return JSON.parse(readFileSync(file, "utf8")).vectors;
}

/** {esm: file URL of the ES module, iife: source defining the global ParleyVectors}. */
export async function bundleVectors() {
  const require = createRequire(path.join(WEB, "package.json"));
  const vite = await import(pathToFileURL(require.resolve("vite")).href);
  const outDir = mkdtempSync(path.join(tmpdir(), "parley-vectors-"));
  await vite.build({
    root: WEB,
    configFile: false,
    logLevel: "warn",
    build: {
      outDir,
      emptyOutDir: true,
      minify: false,
      lib: {
        entry: path.join(here, "vector-entry.ts"),
        name: "ParleyVectors",
        formats: ["es", "iife"],
        fileName: (format) => `vectors.${format}.js`,
      },
    },
  });
  return {
    esm: pathToFileURL(path.join(outDir, "vectors.es.js")).href,
    iife: readFileSync(path.join(outDir, "vectors.iife.js"), "utf8"),
    cleanup: () => rmSync(outDir, { recursive: true, force: true }),
  };
}

export function failures(results) {
  return Object.entries(results).filter(([, problem]) => problem !== null);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const bundle = await bundleVectors();
  try {
    const { runVectors } = await import(bundle.esm);
    const results = await runVectors(loadVectors());
    console.log(JSON.stringify({ where: "node", results }));
    process.exitCode = failures(results).length ? 1 : 0;
  } finally {
    bundle.cleanup();
  }
}
