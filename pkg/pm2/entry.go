package pm2

import (
	"encoding/json"
	"fmt"

	"github.com/cohuron/deploy/pkg/tree"
)

// EntryFile is where, under the live root, the agent keeps the entry of
// cluster workers that load modules before their script.
const EntryFile = ".cohuron-agent/pm2-cluster-entry.mjs"

// entry starts a PM2 cluster worker's script after the modules its node
// options load (--import X, --require X). PM2 forks every cluster worker
// from its daemon, in the daemon's directory and environment, and only
// then moves it to the app's cwd and sets the app's env: `node --import
// tsx` would resolve tsx, and tsx its tsconfig.json, from the wrong place.
// This entry runs once PM2 has done both, loads each module as node
// would (resolved from the app's cwd) and then the script, with the
// script's path as argv[1].
const entry = `// Written by cohuron-agent (pkg/pm2): the entry of PM2 cluster workers
// whose node options load modules. See EntryFile in pkg/pm2.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const require = createRequire(path.join(process.cwd(), 'cohuron-agent-entry.js'));
for (const [kind, spec] of JSON.parse(process.env.COHURON_NODE_PRELOAD || '[]')) {
  if (kind === 'require') {
    require(spec);
  } else {
    await import(pathToFileURL(require.resolve(spec)).href);
  }
}
const script = path.resolve(process.cwd(), process.env.COHURON_NODE_SCRIPT);
process.argv[1] = script;
await import(pathToFileURL(script).href);
`

// preload splits node options into the modules they load, as [kind,
// specifier] pairs for the entry, and the other options.
func preload(nodeArgs []string) (mods [][2]string, rest []string) {
	for i := 0; i < len(nodeArgs); i++ {
		a := nodeArgs[i]
		kind := ""
		switch a {
		case "--import":
			kind = "import"
		case "-r", "--require":
			kind = "require"
		}
		if kind != "" && i+1 < len(nodeArgs) {
			mods = append(mods, [2]string{kind, nodeArgs[i+1]})
			i++
			continue
		}
		for _, p := range []struct{ prefix, kind string }{{"--import=", "import"}, {"--require=", "require"}} {
			if len(a) > len(p.prefix) && a[:len(p.prefix)] == p.prefix {
				kind = p.kind
				mods = append(mods, [2]string{kind, a[len(p.prefix):]})
			}
		}
		if kind == "" {
			rest = append(rest, a)
		}
	}
	return mods, rest
}

// writeEntry writes the entry under dir (a release directory) without
// following any symlink the release's owner may have put there.
func writeEntry(dir string) error {
	if err := tree.WriteFile(dir, EntryFile, []byte(entry), 0o644, -1, -1); err != nil {
		return fmt.Errorf("writing the cluster entry: %w", err)
	}
	return nil
}

func preloadEnv(mods [][2]string) string {
	b, _ := json.Marshal(mods)
	return string(b)
}
