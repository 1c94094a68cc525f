package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// request runs one API call for a command and prints the answer: the API's
// JSON document with --json, nothing with --quiet, otherwise human(w, v) where
// v is the decoded document.
func request[T any](cmd *cobra.Command, operator bool, method, path string, body any, human func(w io.Writer, v T)) error {
	c, err := newClient(cmd, operator)
	if err != nil {
		return err
	}
	var v T
	raw, err := c.call(cmd.Context(), method, path, body, &v)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if asJSON, _ := cmd.Flags().GetBool(flagJSON); asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	}
	if quiet, _ := cmd.Flags().GetBool(flagQuiet); quiet {
		return nil
	}
	human(w, v)
	return nil
}

// field is one line of key: value output.
type field struct {
	key   string
	value any
}

// printFields prints aligned key: value lines.
func printFields(w io.Writer, fields ...field) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f.key, show(f.value))
	}
	_ = tw.Flush()
}

// printTable prints an aligned table with a header row.
func printTable(w io.Writer, header []string, rows [][]any) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = show(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
}

// show formats one value for humans.
func show(v any) string {
	switch x := v.(type) {
	case time.Time:
		if x.IsZero() {
			return "-"
		}
		return x.Local().Format("2006-01-02 15:04:05")
	case []string:
		if len(x) == 0 {
			return "-"
		}
		return strings.Join(x, ",")
	case string:
		if x == "" {
			return "-"
		}
		return x
	case bool:
		if x {
			return "yes"
		}
		return "no"
	}
	return fmt.Sprint(v)
}
