package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/errors"
	"github.com/spf13/cobra"
)

// client talks to the control plane with one bearer key.
type client struct {
	baseURL string
	key     string
	project string // X-Tdb-Project, sent with the operator's admin key
	http    *http.Client
}

// apiError is an error answered by the API (or standing in for one when the
// API cannot be reached, code unreachable, or a write it was sent went
// unanswered, code no_answer).
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%s)", e.Message, e.Code) }

// newClient builds the client for a command from the global flags. Operator
// commands (operator true) prefer --admin-key; the others use --api-key, or
// else the admin key acting in --project.
func newClient(cmd *cobra.Command, operator bool) (*client, error) {
	apiURL, _ := cmd.Flags().GetString(flagAPIURL)
	apiKey := flagOrEnv(cmd, flagAPIKey, "TDB_API_KEY")
	adminKey := flagOrEnv(cmd, flagAdminKey, "TDB_ADMIN_KEY")
	project := flagOrEnv(cmd, flagProject, "TDB_PROJECT_ID")
	c := &client{baseURL: strings.TrimRight(apiURL, "/"), http: &http.Client{
		Timeout: 150 * time.Second,
		// A redirect is an error: a client that follows one may repeat a
		// DELETE on another path, or report a GET of it as done.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	// A key given on the command line wins over one from the environment:
	// with TDB_ADMIN_KEY set (the env file tdb dev writes), --api-key would
	// otherwise be ignored for operator commands.
	explicitAPIKey := cmd.Flag(flagAPIKey) != nil && cmd.Flag(flagAPIKey).Changed
	switch {
	case operator && adminKey != "" && !explicitAPIKey:
		c.key = adminKey
	case apiKey != "":
		c.key = apiKey
	case adminKey != "":
		c.key, c.project = adminKey, project
	case operator:
		return nil, errors.New("this command needs the operator's admin key: set --admin-key or TDB_ADMIN_KEY")
	default:
		return nil, errors.New("no API key: set --api-key or TDB_API_KEY")
	}
	return c, nil
}

// call sends a request (body JSON-encoded when not nil) and returns the raw
// response document, decoded into out when out is not nil. A non-2xx answer
// is an *apiError.
func (c *client) call(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	return c.callLimit(ctx, method, path, body, out, maxResponse)
}

// maxResponse bounds an API answer; maxBackup a metadata backup.
const (
	maxResponse = 64 << 20
	maxBackup   = 4 << 30
)

// callLimit is call reading at most limit bytes of the answer; a longer
// one is an error.
func (c *client) callLimit(ctx context.Context, method, path string, body, out any, limit int64) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, errors.Wrap(err, "encode request")
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, rd)
	if err != nil {
		return nil, errors.Wrapf(err, "build request %s %s", method, path)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.project != "" {
		req.Header.Set("X-Tdb-Project", c.project)
	}
	// Whether the request reached the API: a write it got but did not
	// answer (the node stopped while running it) may have been applied.
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
	}))
	resp, err := c.http.Do(req)
	if err != nil {
		if wrote.Load() && method != http.MethodGet && method != http.MethodHead {
			return nil, &apiError{Code: "no_answer", Message: fmt.Sprintf(
				"%s %s was sent to the tdb API at %s but got no answer (%v): it may have been applied; check before sending it again",
				method, path, c.baseURL, err)}
		}
		return nil, &apiError{Code: "unreachable", Message: fmt.Sprintf("cannot reach the tdb API at %s: %v", c.baseURL, err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &apiError{Code: "unreachable", Message: fmt.Sprintf("read response of %s %s: %v", method, path, err)}
	}
	if int64(len(data)) > limit {
		return nil, errors.Newf("the response of %s %s is larger than %d bytes", method, path, limit)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Code == "" {
			e.Code = fmt.Sprintf("http_%d", resp.StatusCode)
			e.Message = strings.TrimSpace(string(data))
			if e.Message == "" || len(e.Message) > 200 {
				e.Message = resp.Status
			}
		}
		return nil, e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, errors.Wrapf(err, "decode response of %s %s", method, path)
		}
	}
	return data, nil
}
