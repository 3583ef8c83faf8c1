package link

import "testing"

func TestInContainerCgroup(t *testing.T) {
	const id = "b77bc4eb2b6a6c735e749c0e57af4b97181185d8bdf1452faaada7dd06b3701c"
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"0::/docker/" + id + "\n", true},
		{"4:memory:/docker/" + id + "\n0::/docker/" + id + "\n", true},
		{"0::/system.slice/docker-" + id + ".scope\n", true},
		{"0::/system.slice/docker-" + id + ".scope/user-made/sub\n", true},
		{"0::/docker/" + id[:63] + "\n", false},
		{"0::/docker/" + id + "x\n", false},
		{"0::/user.slice/" + id + "-evil/x\n", false},
		{"0::/\n", false},
		{"", false},
		{"garbage", false},
	} {
		if got := inContainerCgroup(tc.text, id); got != tc.want {
			t.Errorf("inContainerCgroup(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	if inContainerCgroup("0::/docker/\n", "") {
		t.Error("an empty ID matched")
	}
}
