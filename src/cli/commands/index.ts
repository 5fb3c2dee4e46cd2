import type { Command } from 'commander';
import type { Wrap } from '../main.js';

/** Adds every subcommand to the program. One file per command. */
export function registerCommands(program: Command, wrap: Wrap): void {
  void program;
  void wrap;
}
