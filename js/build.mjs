// Builds the tracker: node js/build.mjs [--outdir DIR] [--snowplow]
//   js/src/index.js -> DIR/plowline.js (default DIR: src/plowline/collector/static),
//   minified by esbuild, and prints its size raw and gzipped.
//   --snowplow also bundles the official Snowplow browser trackers (3.x and 4.x,
//   npm test dependencies) as DIR/snowplow-3.js and DIR/snowplow-4.js, each
//   exposing window.snowplowTracker, for the compatibility tests.
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..");
const args = process.argv.slice(2);
const at = args.indexOf("--outdir");
const outdir = at >= 0 ? args[at + 1] : join(repo, "src/plowline/collector/static");

const common = {
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
};

const out = join(outdir, "plowline.js");
await build({ ...common, entryPoints: [join(here, "src/index.js")], outfile: out });
const bytes = readFileSync(out);
console.log(
  `${out}: ${bytes.length} bytes, ${gzipSync(bytes, { level: 9 }).length} gzipped`,
);

if (args.includes("--snowplow")) {
  for (const major of [3, 4]) {
    await build({
      ...common,
      entryPoints: [join(here, `snowplow/snowplow-${major}.js`)],
      outfile: join(outdir, `snowplow-${major}.js`),
    });
  }
}
