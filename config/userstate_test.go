package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestUserStateResolve(t *testing.T) {
	_, keyA := newKey(t)
	_, keyB := newKey(t)
	for _, tc := range []struct {
		name, defaults, project string
		want                    []string
	}{
		{"unset everywhere", "", "", DefaultUserState},
		{"defaults set", `user_state = [".vscode-server"]`, "", []string{".vscode-server"}},
		{"project replaces defaults", `user_state = [".vscode-server"]`, `user_state = [".cache/pip", ".ipython"]`, []string{".cache/pip", ".ipython"}},
		{"project turns it off", "", `user_state = []`, []string{}},
		{"defaults turn it off", `user_state = []`, "", []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := fmt.Sprintf("[defaults]\n%s\n[projects.zephyr]\nmembers = [\"alice\"]\n%s\n[users.alice]\nkeys = [%q]\n[users.bob]\nkeys = [%q]\n",
				tc.defaults, tc.project, keyA, keyB)
			c, err := Parse("t.toml", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			p, _ := c.Project("zephyr")
			if got := p.UserStatePaths(); !slices.Equal(got, tc.want) || p.UserState == nil {
				t.Errorf("user_state = %q (set %t), want %q", got, p.UserState != nil, tc.want)
			}
		})
	}
	// Settings built in code without the key get the default list.
	if got := (Settings{}).UserStatePaths(); !slices.Equal(got, DefaultUserState) {
		t.Errorf("zero Settings: %q", got)
	}
}

func TestUserStateProjectDoesNotChangeDefaults(t *testing.T) {
	_, key := newKey(t)
	doc := fmt.Sprintf("[defaults]\nuser_state = [\".a\"]\n[projects.zephyr]\nmembers = [\"alice\"]\n[users.alice]\nkeys = [%q]\n", key)
	c, err := Parse("t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Project("zephyr")
	(*p.UserState)[0] = ".changed"
	if q, _ := c.Project("zephyr"); (*q.UserState)[0] != ".a" {
		t.Errorf("a resolved project shares its list with [defaults]: %q", *q.UserState)
	}
}

func TestUserStateBad(t *testing.T) {
	_, key := newKey(t)
	for _, tc := range []struct {
		name, list, want string
		line             int
	}{
		{"parent", `"../escape"`, `projects.zephyr.user_state[1]: "../escape": must stay inside the home`, 7},
		{"parent inside", `"a/../../b"`, `must stay inside the home`, 7},
		{"absolute", `"/etc"`, `must be relative to the home`, 7},
		{"tilde", `"~/.x"`, `must be relative to the home`, 7},
		{"empty", `""`, `projects.zephyr.user_state[1]: "": an empty path`, 7},
		{"home itself", `"."`, `the home itself cannot be per-user`, 7},
		{"unclean", `"a//b/"`, `not a clean path (write "a/b")`, 7},
		{"duplicate", `".vscode-server"`, `".vscode-server" is listed twice (also entry 0)`, 7},
		{"nested", `".vscode-server/data"`, `is inside ".vscode-server", which is already per-user`, 7},
		{"control", `"a\u001b[31m"`, `control characters`, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := fmt.Sprintf(`[users.alice]
keys = [%q]
[projects.zephyr]
members = ["alice"]
user_state = [
  ".vscode-server",
  %s,
]
`, key, tc.list)
			_, err := Parse("gw.toml", []byte(doc))
			if err == nil {
				t.Fatalf("user_state with %s accepted", tc.list)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), fmt.Sprintf("gw.toml:%d: ", tc.line)) {
				t.Errorf("error = %q, want gw.toml:%d: ...%s", err, tc.line, tc.want)
			}
		})
	}
}

func TestUserStateBadInDefaultsAndContaining(t *testing.T) {
	_, key := newKey(t)
	doc := fmt.Sprintf("[defaults]\nuser_state = [\".cache/JetBrains\", \".cache\"]\n[users.alice]\nkeys = [%q]\n", key)
	_, err := Parse("gw.toml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), `gw.toml:2: defaults.user_state[1]: ".cache" contains ".cache/JetBrains" (entry 0)`) {
		t.Errorf("error = %v", err)
	}
	doc = fmt.Sprintf("[defaults]\nuser_state = \".vscode-server\"\n[users.alice]\nkeys = [%q]\n", key)
	if _, err := Parse("gw.toml", []byte(doc)); err == nil || !strings.HasPrefix(err.Error(), "gw.toml:2: ") {
		t.Errorf("a string for a list: error = %v", err)
	}
}

func TestIdentity(t *testing.T) {
	_, keyA := newKey(t)
	_, keyB := newKey(t)
	_, keyC := newKey(t)
	doc := fmt.Sprintf(`[users.alice]
keys = [%q]
name = "Alice Liddell"
email = "alice@example.com"
[users.bob]
keys = [%q]
email = "bob@example.com"
[users.carol]
keys = [%q]
[projects.zephyr]
members = ["alice", "bob", "carol"]
[projects.solo]
members = ["carol"]
`, keyA, keyB, keyC)
	c, err := Parse("gw.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Project("zephyr")
	if got := p.Identities["alice"]; got != (Identity{"Alice Liddell", "alice@example.com"}) {
		t.Errorf("alice = %+v", got)
	}
	if got := p.Identities["bob"]; got != (Identity{Email: "bob@example.com"}) {
		t.Errorf("bob = %+v", got)
	}
	if _, ok := p.Identities["carol"]; ok || len(p.Identities) != 2 {
		t.Errorf("identities = %+v, want alice and bob only", p.Identities)
	}
	if s, _ := c.Project("solo"); s.Identities != nil {
		t.Errorf("solo (carol, no identity) = %+v", s.Identities)
	}
}

func TestIdentityBad(t *testing.T) {
	_, key := newKey(t)
	for _, tc := range []struct {
		name, field, want string
	}{
		{"newline in name", `name = "Alice\nMallory"`, `users.alice.name "Alice\nMallory": control characters`},
		{"escape in name", `name = "Alice\u001b]0;x\u0007"`, `control characters`},
		{"angle brackets", `name = "Alice <a@b>"`, `may not contain < or >`},
		{"no @", `email = "alice.example.com"`, `users.alice.email "alice.example.com": want an address`},
		{"nothing before @", `email = "@example.com"`, `want an address`},
		{"nothing after @", `email = "alice@"`, `want an address`},
		{"space in email", `email = "alice smith@example.com"`, `want an address`},
		{"newline in email", `email = "a@b\nc"`, `control characters`},
		{"trailing space", `name = "Alice "`, `leading or trailing spaces`},
		{"too long", `name = "` + strings.Repeat("a", 300) + `"`, `longer than 256 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := fmt.Sprintf("[users.alice]\nkeys = [%q]\n\n%s\n", key, tc.field)
			_, err := Parse("gw.toml", []byte(doc))
			if err == nil {
				t.Fatalf("%s accepted", tc.field)
			}
			if !strings.HasPrefix(err.Error(), "gw.toml:4: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want gw.toml:4: ...%s", err, tc.want)
			}
		})
	}
}

// TestUserStateReload: a reload reports the new keys as applied (they take
// effect when a container is next made), never as ignored.
func TestUserStateReload(t *testing.T) {
	_, key := newKey(t)
	parse := func(doc string) *Config {
		t.Helper()
		c, err := Parse("gw.toml", []byte(fmt.Sprintf(doc, key)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	running := parse("[users.alice]\nkeys = [%q]\n[projects.zephyr]\nmembers = [\"alice\"]\n")
	next := parse("[defaults]\nuser_state = [\".a\"]\n[users.alice]\nkeys = [%q]\nemail = \"alice@example.com\"\n[projects.zephyr]\nmembers = [\"alice\"]\nuser_state = []\n")
	got := map[string]Change{}
	for _, c := range Diff(running, next) {
		got[c.Key] = c
	}
	for _, k := range []string{"defaults.user_state", "projects.zephyr.user_state", "users.alice.email"} {
		if c, ok := got[k]; !ok || c.Restart {
			t.Errorf("%s: %+v (reported %t)", k, c, ok)
		}
	}
}

func TestWorkspaceNotInUsers(t *testing.T) {
	_, key := newKey(t)
	for _, ws := range []string{"users/alice", "users", "./users/bob/home", "users//x"} {
		doc := fmt.Sprintf("[users.alice]\nkeys = [%q]\n[projects.zephyr]\nmembers = [\"alice\"]\nworkspace = %q\n", key, ws)
		_, err := Parse("gw.toml", []byte(doc))
		if err == nil || !strings.HasPrefix(err.Error(), "gw.toml:5: ") || !strings.Contains(err.Error(), "private state") {
			t.Errorf("workspace %q: %v", ws, err)
		}
		if ValidWorkspace(ws) {
			t.Errorf("ValidWorkspace(%q)", ws)
		}
	}
	for _, ws := range []string{"monorepo_home/users", "usersx", "/srv/users/alice"} {
		if !ValidWorkspace(ws) {
			t.Errorf("ValidWorkspace(%q) = false", ws)
		}
	}
}

func TestUserStateLimits(t *testing.T) {
	if msg := CheckUserStatePath(strings.Repeat("a", 256)); !strings.Contains(msg, "longer than 255 bytes") {
		t.Errorf("a 256-byte path: %q", msg)
	}
	if msg := CheckUserStatePath("a\xffb"); !strings.Contains(msg, "invalid UTF-8") {
		t.Errorf("invalid UTF-8: %q", msg)
	}
	var list []string
	for i := range 65 {
		list = append(list, fmt.Sprintf(".d%d", i))
	}
	if bad := checkUserState(list); len(bad) != 1 || !strings.Contains(bad[64], "more than 64 paths") {
		t.Errorf("65 paths: %v", bad)
	}
	if bad := checkUserState(list[:64]); len(bad) != 0 {
		t.Errorf("64 paths: %v", bad)
	}
}
