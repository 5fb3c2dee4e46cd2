import { startEmulator } from 'snapline';
// The endpoint process of the benchmarks: the local endpoint alone (no CLI,
// no SDK to load, so it starts in a fraction of `snapline serve`'s time).
// Prints {"url": ...} once listening; SIGTERM closes it, and so does the end
// of the IPC channel of the bench process that started it (that process
// died). Started by hand (no channel), SIGTERM alone ends it:
//
//   node bench/lib/endpoint-child.js '{"dataDir": "...", "rateLimit": 1000}'


/** @type {import('../../src/emulator/index.js').EmulatorOptions} */
const options = JSON.parse(/** @type {string} */ (process.argv[2]));
const emulator = await startEmulator({ ...options, host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ url: emulator.url })}\n`);
const close = () =>
  emulator.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
process.once('SIGTERM', close);
if (process.channel !== undefined) {
  process.once('disconnect', close);
  process.channel.unref();
}
