package fsm

import (
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/errors"
)

// CommandType tags a command's payload. Values are part of the raft log format:
// append new ones, never renumber.
type CommandType uint16

// Command types.
const (
	CmdCreateProject CommandType = iota + 1
	CmdCreateWorkspace
	CmdUpdateWorkspaceSettings
	CmdAddBlueprintVersion
	CmdCreateTenant
	CmdDeleteTenant
	CmdSetDatabaseStatus
	CmdRemoveDatabase
	CmdCreateKey
	CmdRevokeKey
	CmdAddBackend
	CmdSetClusterSettings
	CmdCreateDeployment
	CmdSetDeploymentResult
	CmdRecordAuthFailures
	CmdCreateImport
	CmdSetImportTenant
	CmdRetryImport
	CmdRemoveBackend
	CmdSetLogVersion
	CmdSetDatabaseGuard
	CmdSetClusterID
	CmdCompactState
)

var commandNames = map[CommandType]string{
	CmdCreateProject:           "create_project",
	CmdCreateWorkspace:         "create_workspace",
	CmdUpdateWorkspaceSettings: "update_workspace_settings",
	CmdAddBlueprintVersion:     "add_blueprint_version",
	CmdCreateTenant:            "create_tenant",
	CmdDeleteTenant:            "delete_tenant",
	CmdSetDatabaseStatus:       "set_database_status",
	CmdRemoveDatabase:          "remove_database",
	CmdCreateKey:               "create_key",
	CmdRevokeKey:               "revoke_key",
	CmdAddBackend:              "add_backend",
	CmdSetClusterSettings:      "set_cluster_settings",
	CmdCreateDeployment:        "create_deployment",
	CmdSetDeploymentResult:     "set_deployment_result",
	CmdRecordAuthFailures:      "record_auth_failures",
	CmdCreateImport:            "create_import",
	CmdSetImportTenant:         "set_import_tenant",
	CmdRetryImport:             "retry_import",
	CmdRemoveBackend:           "remove_backend",
	CmdSetLogVersion:           "set_log_version",
	CmdSetDatabaseGuard:        "set_database_guard",
	CmdSetClusterID:            "set_cluster_id",
	CmdCompactState:            "compact_state",
}

func (t CommandType) String() string {
	if n, ok := commandNames[t]; ok {
		return n
	}
	return fmt.Sprintf("command(%d)", uint16(t))
}

// envelope is the one wire form of every command in the raft log.
type envelope struct {
	Type    CommandType     `json:"t"`
	Payload json.RawMessage `json:"p"`
}

// Encode builds the raft log entry for a command. The payload must decode
// into the command's type (a forwarded payload is JSON of any shape): every
// replica's Apply panics on one that does not, on every restart.
func Encode(t CommandType, payload any) ([]byte, error) {
	check, ok := checkers[t]
	if !ok {
		return nil, errors.Newf("encode: unknown command type %d", t)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, errors.Wrapf(err, "encode %s", t)
	}
	if err := check(p); err != nil {
		return nil, errors.Wrapf(err, "encode %s: the payload does not decode into the command", t)
	}
	return json.Marshal(envelope{Type: t, Payload: p})
}

// decode is the one place a log entry is taken apart. A corrupt entry or an
// unknown type panics: skipping it would make this replica diverge. An
// unknown type is a command of a newer build (the log version gate keeps
// those out while a node of an older build is a raft server), so the message
// says what to do.
func decode(data []byte) (CommandType, json.RawMessage) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		panic(fmt.Sprintf("fsm: corrupt log entry: %v", err))
	}
	if _, ok := appliers[env.Type]; !ok {
		panic(fmt.Sprintf("fsm: unknown command type %d, written by a newer build: upgrade this node (this build applies log version %d)", env.Type, LogVersion))
	}
	return env.Type, env.Payload
}

// applier applies one decoded command to the state at a raft index.
type applier func(s *State, index uint64, payload json.RawMessage) (any, error)

var appliers = map[CommandType]applier{}

// checkers decode a payload into its command's type, for Encode.
var checkers = map[CommandType]func(payload json.RawMessage) error{}

// register installs the applier for a command type; the payload is decoded
// into T. Called from init functions, one per command.
func register[T any](t CommandType, fn func(s *State, index uint64, cmd *T) (any, error)) {
	if _, dup := appliers[t]; dup {
		panic(fmt.Sprintf("fsm: applier for %s registered twice", t))
	}
	checkers[t] = func(payload json.RawMessage) error {
		var cmd T
		return json.Unmarshal(payload, &cmd)
	}
	appliers[t] = func(s *State, index uint64, payload json.RawMessage) (any, error) {
		var cmd T
		if err := json.Unmarshal(payload, &cmd); err != nil {
			panic(fmt.Sprintf("fsm: corrupt %s payload: %v", t, err))
		}
		return fn(s, index, &cmd)
	}
}
