package spacklock

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The fixture is a real lock that Spack 0.23.0.dev0 wrote (see testdata/README.md).
const fixtureLock = "testdata/cuda-nccl.v5.spack.lock"

func parseFixture(t *testing.T) *Lockfile {
	t.Helper()
	lf, err := ParseFile(fixtureLock)
	if err != nil {
		t.Fatalf("ParseFile(%s): %v", fixtureLock, err)
	}
	return lf
}

// findSpec returns the only spec named name, failing if there is not exactly one.
func findSpec(t *testing.T, lf *Lockfile, name string) *Spec {
	t.Helper()
	var found []*Spec
	for _, s := range lf.Specs {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s spec, found %d", name, len(found))
	}
	return found[0]
}

func findDep(t *testing.T, s *Spec, name string) Dep {
	t.Helper()
	for _, d := range s.Dependencies {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("%s has no dependency %s (has %v)", s.Name, name, s.Dependencies)
	return Dep{}
}

func TestParseRealV5Lock(t *testing.T) {
	lf := parseFixture(t)

	if lf.Version != 5 || lf.SpecfileVersion != 4 {
		t.Errorf("versions = %d/%d, want lockfile 5, specfile 4", lf.Version, lf.SpecfileVersion)
	}
	if lf.Spack == nil || lf.Spack.Version != "0.23.0.dev0" || lf.Spack.Commit != "f809b56f81cbda887e74b847f9bf1d6d0d5cadaa" {
		t.Errorf("spack = %+v", lf.Spack)
	}
	if got := len(lf.Specs); got != 48 {
		t.Errorf("%d concrete specs, want 48", got)
	}

	wantRoots := []Root{
		{Hash: "bxii57ne2y6zwwie43mldmqmzavrxhac", Spec: "cuda@12.6.2%gcc@11.4.1"},
		{Hash: "pmwbbxfzx3hx2bd55kwehakwps5wmp7m", Spec: "nccl@2.22.3-1%gcc@11.4.1+cuda cuda_arch=80"},
	}
	if !slices.Equal(lf.Roots, wantRoots) {
		t.Errorf("roots = %+v, want %+v", lf.Roots, wantRoots)
	}

	cuda := lf.Specs["bxii57ne2y6zwwie43mldmqmzavrxhac"]
	if cuda.Name != "cuda" || cuda.Version != "12.6.2" {
		t.Errorf("root 0 = %s@%s, want cuda@12.6.2", cuda.Name, cuda.Version)
	}
	if cuda.Arch != (Arch{Platform: "linux", OS: "rocky9", Target: "icelake"}) {
		t.Errorf("cuda arch = %+v", cuda.Arch)
	}
	if got := lf.CompilerOf(cuda); got != "gcc@11.4.1" {
		t.Errorf("cuda compiler = %q", got)
	}
	if d := findDep(t, cuda, "libxml2"); !slices.Equal(d.Types, []string{"build", "link"}) || d.Hash != "gvuimzsmqbgqwbu7qdc6t5w44flcsd4t" {
		t.Errorf("cuda -> libxml2 = %+v", d)
	}

	nccl := lf.Specs["pmwbbxfzx3hx2bd55kwehakwps5wmp7m"]
	if nccl.Name != "nccl" || nccl.Version != "2.22.3-1" {
		t.Errorf("root 1 = %s@%s", nccl.Name, nccl.Version)
	}
	for variant, want := range map[string]string{"cuda": "+cuda", "cuda_arch": "cuda_arch=80", "build_system": "build_system=makefile"} {
		if got, ok := nccl.Variant(variant); !ok || got != want {
			t.Errorf("nccl variant %s = %q, %v; want %q", variant, got, ok, want)
		}
	}
	if _, ok := nccl.Variant("cflags"); ok {
		t.Error("cflags reported as a variant")
	}
	// The root nccl links against the root cuda: the edge the environment exists for.
	if d := findDep(t, nccl, "cuda"); d.Hash != cuda.Hash || !slices.Equal(d.Types, []string{"build", "link"}) {
		t.Errorf("nccl -> cuda = %+v", d)
	}
	if d := findDep(t, nccl, "rdma-core"); !d.HasType("link") {
		t.Errorf("nccl -> rdma-core = %+v", d)
	}
	if got := len(nccl.Dependencies); got != 5 {
		t.Errorf("nccl has %d direct dependencies, want 5", got)
	}

	// Virtuals ride on the edge: glibc provides libc, zlib provides zlib-api.
	if d := findDep(t, nccl, "glibc"); !slices.Equal(d.Virtuals, []string{"libc"}) || !slices.Equal(d.Types, []string{"link"}) {
		t.Errorf("nccl -> glibc = %+v", d)
	}
	libxml2 := findSpec(t, lf, "libxml2")
	if d := findDep(t, libxml2, "zlib"); !slices.Equal(d.Virtuals, []string{"zlib-api"}) {
		t.Errorf("libxml2 -> zlib = %+v", d)
	}

	glibc := findSpec(t, lf, "glibc")
	if glibc.External == nil || glibc.External.Path != "/usr" || len(glibc.Dependencies) != 0 {
		t.Errorf("glibc external = %+v, deps %v", glibc.External, glibc.Dependencies)
	}

	// Two perl nodes with the same version: a hash-keyed reader keeps both.
	var perls []string
	for _, h := range lf.SortedHashes() {
		if lf.Specs[h].Name == "perl" {
			perls = append(perls, h)
		}
	}
	if !slices.Equal(perls, []string{"lagw4sorfnns676ifgqfxamxiahvcdfk", "y2osmxh4vpghgkl2fxqgbselrak5ht5b"}) {
		t.Errorf("perl hashes = %v", perls)
	}
}

func TestSortedHashesDeterministic(t *testing.T) {
	a, b := parseFixture(t).SortedHashes(), parseFixture(t).SortedHashes()
	if !slices.Equal(a, b) {
		t.Fatal("SortedHashes differs between two parses")
	}
	if len(a) != 48 {
		t.Fatalf("len = %d", len(a))
	}
}

// The hand-written v6 lock has Spack 1.x's shape: no compiler attribute, the
// compiler as a build dependency providing c/cxx, the `direct` edge flag.
func TestParseV6Shape(t *testing.T) {
	lf, err := ParseFile("testdata/handmade.v6.spack.lock")
	if err != nil {
		t.Fatal(err)
	}
	if lf.Version != 6 || lf.SpecfileVersion != 5 || len(lf.Specs) != 7 || len(lf.Roots) != 2 {
		t.Fatalf("version %d/%d, %d specs, %d roots", lf.Version, lf.SpecfileVersion, len(lf.Specs), len(lf.Roots))
	}
	nccl := lf.Specs[lf.Roots[0].Hash]
	if nccl.Name != "nccl" || nccl.Compiler != nil {
		t.Fatalf("root 0 = %+v", nccl)
	}
	if got, _ := nccl.Variant("cuda_arch"); got != "cuda_arch=80,90" {
		t.Errorf("cuda_arch = %q", got)
	}
	if got := lf.CompilerOf(nccl); got != "gcc@13.3.0" {
		t.Errorf("compiler = %q, want gcc@13.3.0 (from the c/cxx build dependency)", got)
	}
	gcc := findDep(t, nccl, "gcc")
	if !gcc.Direct || !slices.Equal(gcc.Virtuals, []string{"c", "cxx"}) || !slices.Equal(gcc.Types, []string{"build"}) {
		t.Errorf("nccl -> gcc = %+v", gcc)
	}
	if d := findDep(t, nccl, "cuda"); d.Direct || !d.HasType("link") {
		t.Errorf("nccl -> cuda = %+v", d)
	}
	cuda := lf.Specs[lf.Roots[1].Hash]
	if cuda.External == nil || cuda.External.Path != "/usr/local/cuda-12.9" || cuda.Version != "12.9.1" {
		t.Errorf("cuda = %+v external %+v", cuda, cuda.External)
	}
	if got := lf.CompilerOf(cuda); got != "" {
		t.Errorf("external cuda compiler = %q, want none", got)
	}
	if cuda.Arch.Target != "x86_64_v3" || cuda.Arch.OS != "ubuntu24.04" {
		t.Errorf("arch = %+v", cuda.Arch)
	}
}

// v4 edges carry `type`; v7 roots carry `group`; v5 may include other envs.
func TestParseOtherVersions(t *testing.T) {
	v4 := `{"_meta": {"file-type": "spack-lockfile", "lockfile-version": 4, "specfile-version": 3},
	  "roots": [{"hash": "aaaa", "spec": "zlib"}],
	  "concrete_specs": {
	    "aaaa": {"name": "zlib", "version": "1.2.13", "arch": {"platform": "linux", "platform_os": "ubuntu22.04", "target": "x86_64"},
	             "compiler": {"name": "gcc", "version": "11.3.0"}, "parameters": {"shared": true, "optimize": false},
	             "dependencies": [{"name": "gmake", "hash": "bbbb", "type": ["build"]}], "hash": "aaaa"},
	    "bbbb": {"name": "gmake", "version": "4.4", "hash": "bbbb"}}}`
	lf, err := Parse(strings.NewReader(v4))
	if err != nil {
		t.Fatal(err)
	}
	z := lf.Specs["aaaa"]
	if d := z.Dependencies[0]; d.Name != "gmake" || !slices.Equal(d.Types, []string{"build"}) {
		t.Errorf("v4 edge = %+v", d)
	}
	if z.Arch.Target != "x86_64" {
		t.Errorf("string target = %q", z.Arch.Target)
	}
	if got := z.Variants(); !slices.Equal(got, []string{"~optimize", "+shared"}) {
		t.Errorf("variants = %v", got)
	}

	v7 := `{"_meta": {"file-type": "spack-lockfile", "lockfile-version": 7, "specfile-version": 5},
	  "roots": [{"hash": "aaaa", "spec": "hdf5", "group": "default"}],
	  "concrete_specs": {"aaaa": {"name": "hdf5", "version": "1.14.6", "hash": "aaaa"}}}`
	lf, err = Parse(strings.NewReader(v7))
	if err != nil {
		t.Fatal(err)
	}
	if lf.Roots[0].Group != "default" {
		t.Errorf("v7 group = %q", lf.Roots[0].Group)
	}

	included := `{"_meta": {"file-type": "spack-lockfile", "lockfile-version": 5, "specfile-version": 4},
	  "roots": [{"hash": "aaaa", "spec": "app"}],
	  "concrete_specs": {"aaaa": {"name": "app", "version": "1", "hash": "aaaa",
	      "dependencies": [{"name": "lib", "hash": "bbbb", "parameters": {"deptypes": ["link"], "virtuals": []}}]}},
	  "include_concrete": {"/envs/base": {
	      "roots": [{"hash": "bbbb", "spec": "lib"}],
	      "concrete_specs": {"bbbb": {"name": "lib", "version": "2", "hash": "bbbb"}}}}}`
	lf, err = Parse(strings.NewReader(included))
	if err != nil {
		t.Fatal(err)
	}
	if len(lf.Roots) != 2 || lf.Roots[1].Included != "/envs/base" || lf.Specs["bbbb"] == nil {
		t.Errorf("include_concrete: roots %+v", lf.Roots)
	}
}

func TestParseErrors(t *testing.T) {
	meta := `"_meta": {"file-type": "spack-lockfile", "lockfile-version": 5}`
	tests := []struct {
		name string
		in   string
		is   error  // sentinel the error must wrap; nil: any error
		msg  string // substring the message must hold
	}{
		{"empty", ``, nil, "parse spack lockfile"},
		{"truncated", `{"_meta": {"file-type": "spack-lockfile", `, nil, "parse spack lockfile"},
		{"not an object", `[1, 2]`, nil, "parse spack lockfile"},
		{"no meta", `{"roots": [], "concrete_specs": {}}`, ErrNotLockfile, "no _meta"},
		{"wrong file type", `{"_meta": {"file-type": "spack-database", "lockfile-version": 5}, "concrete_specs": {}}`, ErrNotLockfile, `"spack-database"`},
		{"no version", `{"_meta": {"file-type": "spack-lockfile"}, "concrete_specs": {}}`, ErrNotLockfile, "lockfile-version"},
		{"v3", `{"_meta": {"file-type": "spack-lockfile", "lockfile-version": 3}, "concrete_specs": {}}`, ErrUnsupportedVersion, "lockfile-version 3"},
		{"v8", `{"_meta": {"file-type": "spack-lockfile", "lockfile-version": 8}, "concrete_specs": {}}`, ErrUnsupportedVersion, "lockfile-version 8"},
		{"no concrete specs", `{` + meta + `, "roots": []}`, ErrNotLockfile, "concrete_specs"},
		{"root hash missing", `{` + meta + `, "roots": [{"hash": "zzzz", "spec": "x"}], "concrete_specs": {}}`, ErrInconsistent, "zzzz"},
		{"dependency hash missing", `{` + meta + `, "roots": [], "concrete_specs": {"aaaa": {"name": "a", "version": "1",
			"dependencies": [{"name": "b", "hash": "bbbb", "parameters": {"deptypes": ["link"]}}]}}}`, ErrInconsistent, "depends on b with hash bbbb"},
		{"dependency name mismatch", `{` + meta + `, "roots": [], "concrete_specs": {"aaaa": {"name": "a", "version": "1",
			"dependencies": [{"name": "b", "hash": "aaaa"}]}}}`, ErrInconsistent, "but that hash is a"},
		{"spec without name", `{` + meta + `, "roots": [], "concrete_specs": {"aaaa": {"version": "1"}}}`, ErrInconsistent, "no name"},
		{"hash field disagrees with key", `{` + meta + `, "roots": [], "concrete_specs": {"aaaa": {"name": "a", "hash": "cccc"}}}`, ErrInconsistent, "says its hash is cccc"},
		{"wrong field type", `{` + meta + `, "roots": "cuda", "concrete_specs": {}}`, nil, "parse spack lockfile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestParseFileNamesThePath(t *testing.T) {
	_, err := ParseFile("testdata/cuda-nccl.spack.yaml") // YAML, not a lock
	if err == nil || !strings.Contains(err.Error(), "testdata/cuda-nccl.spack.yaml") {
		t.Fatalf("err = %v, want one naming the file", err)
	}
}
