package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// Fuzz targets for the configuration parser and the name rules. Seeds: the
// f.Add calls (the annotated example etc/gateway.toml among them) and
// testdata/fuzz/<target>/.

const fuzzKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDqAMccDm5fhgWclQhx4F8prEAZ8Os7bmU1bVvYGVf5n"

// FuzzParse: the parser never panics; a refused document gets errors that
// each name the file and a line inside it; an accepted one holds only valid
// names, and members that exist.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../etc/gateway.toml"); err == nil {
		f.Add(string(example))
	}
	for _, doc := range []string{
		"[projects.zephyr]\nmembers = [\"alice\"]\n[users.alice]\nkeys = [\"" + fuzzKey + "\"]\n",
		"[server]\nlisten = \"127.0.0.1:2222\"\nmax_auth_tries = -1\n",
		"[server]\nlisten = \"nohost\"\n",
		"[projects.\"../etc\"]\nmembers = []\n",
		"[projects.Zephyr]\n",
		"[projects.\"-rf\"]\n",
		"[users.\"a/b\"]\nkeys = [\"" + fuzzKey + "\"]\n",
		"[users.bob]\nkeys = [\"not a key\"]\n",
		"[projects.z]\nmembers = [\"ghost\"]\n",
		"[defaults]\ngpus = \"some\"\nshm_size = \"lots\"\nenv = { \"A-B\" = \"x\" }\n",
		"[defaults]\nmounts = [{ source = \"rel\", target = \"/x\" }]\n",
		"[server]\nbogus = 1\n[docker]\nalso_bogus = 2\n",
		"[server\nlisten = ",
		"listen = \"x\"\nlisten = \"y\"\n",
		"[server]\nidle_stop = \"forever\"\n",
		"server.max_startups = -3\n",
		"server.max_auth_tries = -1\n",
		"projects.Zeph.members = []\n",
		"\x00\xff\n[",
		"",
	} {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		const name = "fuzz.toml"
		c, err := Parse(name, []byte(doc))
		if err != nil {
			lines := strings.Count(doc, "\n") + 1
			for _, e := range leafErrors(err) {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("error %q (%T) is not a config.Error", e, e)
				}
				if ce.File != name || ce.Line < 1 || ce.Line > lines {
					t.Fatalf("error %q names %s:%d, want %s and a line in 1..%d", ce, ce.File, ce.Line, name, lines)
				}
				if !strings.HasPrefix(ce.Error(), name+":") {
					t.Fatalf("error %q does not start with the file name", ce)
				}
			}
			return
		}
		for p, proj := range c.Projects {
			if !ValidProjectName(p) {
				t.Fatalf("accepted project name %q", p)
			}
			if proj == nil {
				continue
			}
			for _, m := range proj.Members {
				if _, ok := c.Users[m]; !ok {
					t.Fatalf("project %q has member %q with no [users] table", p, m)
				}
			}
		}
		for u := range c.Users {
			if !ValidUserName(u) {
				t.Fatalf("accepted user name %q", u)
			}
		}
		for _, p := range c.ProjectNames() {
			if _, ok := c.Project(p); !ok {
				t.Fatalf("listed project %q does not resolve", p)
			}
		}
	})
}

// leafErrors flattens errors.Join trees.
func leafErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// dockerNameRE is the Docker engine's rule for container (and network) names.
var dockerNameRE = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// FuzzNames: a name either rule accepts cannot escape a directory, be
// taken for an option, or make "sygaldry-<project>-<user>" ambiguous or
// unacceptable to the engine.
func FuzzNames(f *testing.F) {
	for _, p := range [][2]string{
		{"zephyr", "alice"}, {"torch_cuda", "bob_2"}, {"a-b", "c"}, {"..", "."}, {"../etc", "a/b"},
		{"-rf", "-x"}, {"Zephyr", "Alice"}, {"z\x00", "a\x00"}, {"z\n", "a\n"}, {"", ""},
		{"a" + strings.Repeat("b", 31), "c" + strings.Repeat("d", 31)},
		{"a" + strings.Repeat("b", 32), "c" + strings.Repeat("d", 32)},
		{"a-", "b-c"}, {"ζ", "ü"}, {"a.b", "c.d"}, {"a..", "b.."}, {"a b", "c\\d"}, {"1a", "_a"},
	} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, project, user string) {
		for _, n := range []struct {
			name  string
			valid bool
			kind  string
		}{{project, ValidProjectName(project), "project"}, {project, ValidUserName(project), "user"},
			{user, ValidProjectName(user), "project"}, {user, ValidUserName(user), "user"}} {
			if !n.valid {
				continue
			}
			if bad := unsafeName(n.name); bad != "" {
				t.Fatalf("%s name %q accepted: %s", n.kind, n.name, bad)
			}
			if n.kind == "user" && strings.Contains(n.name, "-") {
				t.Fatalf("user name %q accepted with a '-'", n.name)
			}
		}
		if ValidProjectName(project) && ValidUserName(user) {
			cname := "sygaldry-" + project + "-" + user
			if !dockerNameRE.MatchString(cname) {
				t.Fatalf("container name %q is not one the engine accepts", cname)
			}
			rest, _ := strings.CutPrefix(cname, "sygaldry-")
			i := strings.LastIndexByte(rest, '-')
			if rest[:i] != project || rest[i+1:] != user {
				t.Fatalf("container name %q splits as %q, %q", cname, rest[:i], rest[i+1:])
			}
		}
	})
}

// unsafeName says why name must not become a path element, a container
// name part, a label or an argument; "" when it is safe.
func unsafeName(name string) string {
	switch {
	case name == "" || len(name) > 32:
		return "length"
	case strings.ContainsAny(name, "/\\\x00"):
		return "path separator or NUL"
	case strings.Contains(name, ".."), name == ".":
		return "dot path"
	case name[0] == '-':
		return "leading '-'"
	case !filepath.IsLocal(name) || filepath.Base(filepath.Join("/srv/data", name)) != name ||
		filepath.Dir(filepath.Join("/srv/data", name)) != "/srv/data":
		return "escapes its directory"
	}
	for _, r := range name {
		if r > unicode.MaxASCII || unicode.IsUpper(r) || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return "upper case, space, control or non-ASCII character"
		}
	}
	return ""
}
