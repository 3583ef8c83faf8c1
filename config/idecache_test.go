package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestIDECacheResolve(t *testing.T) {
	_, key := newKey(t)
	doc := fmt.Sprintf("[defaults]\nide_cache = \"/srv/ide\"\n[projects.zephyr]\nmembers = [\"alice\"]\n[users.alice]\nkeys = [%q]\n", key)
	c, err := Parse("gw.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// Every project gets the host's cache; the path need not exist at load
	// (like a mount's source).
	if p, _ := c.Project("zephyr"); p.IDECache != "/srv/ide" {
		t.Errorf("project's ide_cache = %q, want /srv/ide", p.IDECache)
	}
	doc = fmt.Sprintf("[projects.zephyr]\nmembers = [\"alice\"]\n[users.alice]\nkeys = [%q]\n", key)
	if c, err = Parse("gw.toml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.Project("zephyr"); p.IDECache != "" {
		t.Errorf("unset ide_cache = %q, want none", p.IDECache)
	}
}

func TestIDECacheBad(t *testing.T) {
	_, key := newKey(t)
	for _, tc := range []struct {
		name, table, value, want string
		line                     int
	}{
		{"relative", "[defaults]\n", `"srv/ide"`, `defaults.ide_cache "srv/ide": must be an absolute host path`, 6},
		{"unclean", "[defaults]\n", `"/srv/ide/../x"`, `not a clean path (write "/srv/x")`, 6},
		{"trailing slash", "[defaults]\n", `"/srv/ide/"`, `not a clean path (write "/srv/ide")`, 6},
		{"root", "[defaults]\n", `"/"`, `the host's root directory cannot be the IDE cache`, 6},
		{"control", "[defaults]\n", `"/srv/\u001b[31m"`, `control characters`, 6},
		{"not a string", "[defaults]\n", `["/srv/ide"]`, ``, 6},
		{"in a project", "", `"/srv/ide"`, `projects.zephyr.ide_cache: set the IDE cache in [defaults]`, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := fmt.Sprintf("[users.alice]\nkeys = [%q]\n[projects.zephyr]\nmembers = [\"alice\"]\n%side_cache = %s\n", key, tc.table, tc.value)
			_, err := Parse("gw.toml", []byte(doc))
			if err == nil {
				t.Fatalf("ide_cache = %s accepted:\n%s", tc.value, doc)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), fmt.Sprintf("gw.toml:%d: ", tc.line)) {
				t.Errorf("error = %q, want gw.toml:%d: ...%s", err, tc.line, tc.want)
			}
		})
	}
}
