#!/usr/bin/env node
// Launcher for the hsmkey command line (built by `npm run build` into dist/).
import { main } from "../dist/src/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
