package cli

import "testing"

func TestDisplayEscapesWhatWouldDriveTheTerminal(t *testing.T) {
	tests := []struct{ in, want string }{
		{"orders/42", "orders/42"},
		{"with space", "with space"},
		{"Zürich 東京", "Zürich 東京"},
		{"", ""},
		{"a\nb", `"a\nb"`},
		{"tab\there", `"tab\there"`},
		{"\x1b[31mred", `"\x1b[31mred"`},
		{"nul\x00", `"nul\x00"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
		{"\u202eevil", `"\u202eevil"`}, // right-to-left override
		{`"quoted"`, `"\"quoted\""`},
	}
	for _, tc := range tests {
		if got := display(tc.in); got != tc.want {
			t.Errorf("display(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if got := display([]byte(tc.in)); got != tc.want {
			t.Errorf("display([]byte(%q)) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
