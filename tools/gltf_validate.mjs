// Validate GLB/glTF files with the Khronos glTF validator (npm gltf-validator) in one node process.
// Usage: node tools/gltf_validate.mjs FILE...   (or file names, one a line, on stdin when no arguments)
// Prints one JSON object: {"<file>": {"numErrors", "numWarnings", "numInfos", "errors": [...], "warnings": [...]}}.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(here, "..", "package.json"));
const validator = require("gltf-validator");

let files = process.argv.slice(2);
if (files.length === 0) {
  files = readFileSync(0, "utf8").split("\n").map((s) => s.trim()).filter(Boolean);
}
const out = {};
for (const file of files) {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), { uri: file, maxIssues: 200 });
  const pick = (sev) => report.issues.messages.filter((m) => m.severity === sev)
    .map((m) => ({ code: m.code, message: m.message, pointer: m.pointer }));
  out[file] = {
    numErrors: report.issues.numErrors,
    numWarnings: report.issues.numWarnings,
    numInfos: report.issues.numInfos,
    errors: pick(0),
    warnings: pick(1),
    validatorVersion: report.validatorVersion,
  };
}
process.stdout.write(JSON.stringify(out));
