package classify

import pg "github.com/pganalyze/pg_query_go/v6"

// objectNames spells pg_query's object types as they appear in SQL.
var objectNames = [...]string{
	pg.ObjectType_OBJECT_ACCESS_METHOD:         "ACCESS METHOD",
	pg.ObjectType_OBJECT_AGGREGATE:             "AGGREGATE",
	pg.ObjectType_OBJECT_AMOP:                  "OPERATOR FAMILY",
	pg.ObjectType_OBJECT_AMPROC:                "OPERATOR FAMILY",
	pg.ObjectType_OBJECT_ATTRIBUTE:             "TYPE",
	pg.ObjectType_OBJECT_CAST:                  "CAST",
	pg.ObjectType_OBJECT_COLUMN:                "TABLE",
	pg.ObjectType_OBJECT_COLLATION:             "COLLATION",
	pg.ObjectType_OBJECT_CONVERSION:            "CONVERSION",
	pg.ObjectType_OBJECT_DATABASE:              "DATABASE",
	pg.ObjectType_OBJECT_DEFAULT:               "TABLE",
	pg.ObjectType_OBJECT_DEFACL:                "DEFAULT PRIVILEGES",
	pg.ObjectType_OBJECT_DOMAIN:                "DOMAIN",
	pg.ObjectType_OBJECT_DOMCONSTRAINT:         "DOMAIN",
	pg.ObjectType_OBJECT_EVENT_TRIGGER:         "EVENT TRIGGER",
	pg.ObjectType_OBJECT_EXTENSION:             "EXTENSION",
	pg.ObjectType_OBJECT_FDW:                   "FOREIGN DATA WRAPPER",
	pg.ObjectType_OBJECT_FOREIGN_SERVER:        "SERVER",
	pg.ObjectType_OBJECT_FOREIGN_TABLE:         "FOREIGN TABLE",
	pg.ObjectType_OBJECT_FUNCTION:              "FUNCTION",
	pg.ObjectType_OBJECT_INDEX:                 "INDEX",
	pg.ObjectType_OBJECT_LANGUAGE:              "LANGUAGE",
	pg.ObjectType_OBJECT_LARGEOBJECT:           "LARGE OBJECT",
	pg.ObjectType_OBJECT_MATVIEW:               "MATERIALIZED VIEW",
	pg.ObjectType_OBJECT_OPCLASS:               "OPERATOR CLASS",
	pg.ObjectType_OBJECT_OPERATOR:              "OPERATOR",
	pg.ObjectType_OBJECT_OPFAMILY:              "OPERATOR FAMILY",
	pg.ObjectType_OBJECT_PARAMETER_ACL:         "PARAMETER",
	pg.ObjectType_OBJECT_POLICY:                "POLICY",
	pg.ObjectType_OBJECT_PROCEDURE:             "PROCEDURE",
	pg.ObjectType_OBJECT_PUBLICATION:           "PUBLICATION",
	pg.ObjectType_OBJECT_PUBLICATION_NAMESPACE: "PUBLICATION",
	pg.ObjectType_OBJECT_PUBLICATION_REL:       "PUBLICATION",
	pg.ObjectType_OBJECT_ROLE:                  "ROLE",
	pg.ObjectType_OBJECT_ROUTINE:               "ROUTINE",
	pg.ObjectType_OBJECT_RULE:                  "RULE",
	pg.ObjectType_OBJECT_SCHEMA:                "SCHEMA",
	pg.ObjectType_OBJECT_SEQUENCE:              "SEQUENCE",
	pg.ObjectType_OBJECT_SUBSCRIPTION:          "SUBSCRIPTION",
	pg.ObjectType_OBJECT_STATISTIC_EXT:         "STATISTICS",
	pg.ObjectType_OBJECT_TABCONSTRAINT:         "TABLE",
	pg.ObjectType_OBJECT_TABLE:                 "TABLE",
	pg.ObjectType_OBJECT_TABLESPACE:            "TABLESPACE",
	pg.ObjectType_OBJECT_TRANSFORM:             "TRANSFORM",
	pg.ObjectType_OBJECT_TRIGGER:               "TRIGGER",
	pg.ObjectType_OBJECT_TSCONFIGURATION:       "TEXT SEARCH CONFIGURATION",
	pg.ObjectType_OBJECT_TSDICTIONARY:          "TEXT SEARCH DICTIONARY",
	pg.ObjectType_OBJECT_TSPARSER:              "TEXT SEARCH PARSER",
	pg.ObjectType_OBJECT_TSTEMPLATE:            "TEXT SEARCH TEMPLATE",
	pg.ObjectType_OBJECT_TYPE:                  "TYPE",
	pg.ObjectType_OBJECT_USER_MAPPING:          "USER MAPPING",
	pg.ObjectType_OBJECT_VIEW:                  "VIEW",
}

// Tags per object type, built once so classification does not concatenate.
var createTags, alterTags, dropTags [len(objectNames)]string

func init() {
	for i, name := range objectNames {
		if name == "" {
			continue
		}
		createTags[i] = "CREATE " + name
		alterTags[i] = "ALTER " + name
		dropTags[i] = "DROP " + name
	}
}

func createTag(t pg.ObjectType) string { return objectTag(&createTags, t, "CREATE") }
func alterTag(t pg.ObjectType) string  { return objectTag(&alterTags, t, "ALTER") }
func dropTag(t pg.ObjectType) string   { return objectTag(&dropTags, t, "DROP") }

func objectTag(tags *[len(objectNames)]string, t pg.ObjectType, verb string) string {
	if t >= 0 && int(t) < len(tags) && tags[t] != "" {
		return tags[t]
	}
	return verb
}
