#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// The AWS SDK warns on every start under Node 20; that is not the user's business.
// It honours only 'true' (a user's own '1' would let the warning through).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  // A clone that was never built (an installed package always holds dist/).
  process.stderr.write(
    `snapline: error: the program is not built: ${fileURLToPath(entry)} is missing\nhint: in the clone, run npm ci (which builds it), or npm run build\n`,
  );
  process.exit(70);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
