#!/usr/bin/env node
// The AWS SDK warns on every start under Node 20; that is not the user's business.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { main } = await import('../dist/src/cli/main.js');
process.exitCode = await main(process.argv);
