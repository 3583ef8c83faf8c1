package config

import (
	"strings"
	"testing"
	"time"
)

func TestMaxStartupsForms(t *testing.T) {
	for doc, want := range map[string]Startups{
		"":                                      {Start: 64, Rate: 100, Full: 64, Set: true},
		"max_startups = 20":                     {Start: 20, Rate: 100, Full: 20, Set: true},
		`max_startups = "20"`:                   {Start: 20, Rate: 100, Full: 20, Set: true},
		`max_startups = "10:30:100"`:            {Start: 10, Rate: 30, Full: 100, Set: true, Early: true},
		`max_startups = " 5 : 100 : 6 "`:        {Start: 5, Rate: 100, Full: 6, Set: true, Early: true},
		"max_startups = 0\nkex_timeout = \"0\"": {Start: 64, Rate: 100, Full: 64, Set: true},
	} {
		c, err := Parse("f.toml", []byte("[server]\n"+doc+"\n"))
		if err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if c.Server.MaxStartups != want {
			t.Errorf("%q: %+v, want %+v", doc, c.Server.MaxStartups, want)
		}
	}
	c, err := Parse("f.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Server
	if s.MaxStartupsQueue != 512 || s.PerSourceMaxStartups != 10 || s.KexTimeout.D != 15*time.Second ||
		s.MaxSessions != 10 || s.MaxForwards != 100 {
		t.Errorf("defaults: queue %d, per source %d, kex %v, sessions %d, forwards %d",
			s.MaxStartupsQueue, s.PerSourceMaxStartups, s.KexTimeout.D, s.MaxSessions, s.MaxForwards)
	}
}

func TestMaxStartupsErrorsNameTheLine(t *testing.T) {
	for doc, want := range map[string]string{
		`max_startups = "10:30"`:       `f.toml:3: server.max_startups: "10:30": want "start:rate:full"`,
		`max_startups = "10:130:100"`:  "f.toml:3: server.max_startups: \"10:130:100\": rate is a percentage",
		`max_startups = "10:30:10"`:    "f.toml:3: server.max_startups: \"10:30:10\": full must be greater than start",
		`max_startups = "0:30:10"`:     "f.toml:3: server.max_startups: \"0:30:10\": start must be at least 1",
		`max_startups = "a:b:c"`:       "f.toml:3: server.max_startups: \"a:b:c\": want \"start:rate:full\" with non-negative integers",
		`max_startups = -1`:            "f.toml:3: server.max_startups: -1: want a count",
		`max_startups = ["x"]`:         "f.toml:3: server.max_startups: want a count or",
		`max_startups_queue = -5`:      "f.toml:3: server.max_startups_queue = -5",
		`per_source_max_startups = -1`: "f.toml:3: server.per_source_max_startups = -1",
		`max_sessions = -1`:            "f.toml:3: server.max_sessions = -1",
		`max_forwards = 2000000`:       "f.toml:3: server.max_forwards = 2000000",
		`kex_timeout = "soon"`:         "f.toml:3:",
	} {
		_, err := Parse("f.toml", []byte("[server]\nlisten = \"127.0.0.1:22\"\n"+doc+"\n"))
		if err == nil {
			t.Errorf("%q: no error", doc)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q does not contain %q", doc, err, want)
		}
	}
}
