// Builds the dashboard into ../assets, which is committed and embedded in the
// hub binary (include_bytes!), so `cargo build` never needs npm.
//
//   cd crates/realtime-hub/web && npm ci && npm run build
//
// - src/app.js and src/app.css: minified with esbuild;
// - src/index.html and src/favicon.svg: copied;
// - uPlot's minified IIFE build, its CSS and its LICENSE: copied from node_modules.
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'assets');
const src = join(here, 'src');
const uplot = join(here, 'node_modules', 'uplot');

await mkdir(out, { recursive: true });

await build({
  entryPoints: [join(src, 'app.js')],
  outfile: join(out, 'app.js'),
  bundle: false,
  minify: true,
  target: ['es2020'],
  legalComments: 'none',
  logLevel: 'warning',
});
await build({
  entryPoints: [join(src, 'app.css')],
  outfile: join(out, 'app.css'),
  minify: true,
  logLevel: 'warning',
});

await copyFile(join(src, 'index.html'), join(out, 'index.html'));
await copyFile(join(src, 'favicon.svg'), join(out, 'favicon.svg'));
await copyFile(join(uplot, 'dist', 'uPlot.iife.min.js'), join(out, 'uPlot.iife.min.js'));
await copyFile(join(uplot, 'dist', 'uPlot.min.css'), join(out, 'uPlot.min.css'));
await copyFile(join(uplot, 'LICENSE'), join(out, 'uPlot.LICENSE.txt'));

const { version } = JSON.parse(await readFile(join(uplot, 'package.json'), 'utf8'));
await writeFile(
  join(out, 'VERSIONS.txt'),
  `Built by crates/realtime-hub/web (npm run build); do not edit by hand.\nuPlot ${version} (MIT, see uPlot.LICENSE.txt)\n`,
);
console.log(`assets written to ${out} (uPlot ${version})`);
