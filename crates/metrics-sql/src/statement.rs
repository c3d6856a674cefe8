//! SQL text with its bound values, kept in step.
//!
//! Builders append SQL and values through one [`Statement`], so a `?` and its
//! value can never drift apart, and statements nest: an inner statement is
//! appended with its values in place.

/// A value bound to one `?` of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    U64(u64),
    F64(f64),
    Str(String),
    U32s(Vec<u32>),
    Strs(Vec<String>),
}

impl From<u64> for Param {
    fn from(v: u64) -> Self {
        Param::U64(v)
    }
}

impl From<u32> for Param {
    fn from(v: u32) -> Self {
        Param::U64(v.into())
    }
}

impl From<f64> for Param {
    fn from(v: f64) -> Self {
        Param::F64(v)
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Str(v.to_owned())
    }
}

impl From<&[u32]> for Param {
    fn from(v: &[u32]) -> Self {
        Param::U32s(v.to_vec())
    }
}

/// SQL with `?` placeholders and the values for them, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    sql: String,
    params: Vec<Param>,
}

impl Statement {
    pub fn new(sql: &str) -> Self {
        Self { sql: sql.to_owned(), params: Vec::new() }
    }

    /// SQL built elsewhere with one `?` per value of `params`, in order (no
    /// other `?` in it, and no value written into it).
    pub fn from_parts(sql: String, params: Vec<Param>) -> Self {
        debug_assert_eq!(sql.matches('?').count(), params.len());
        Self { sql, params }
    }

    /// Appends SQL text, which must not contain `?` (values go through [`Self::bind`]).
    pub fn sql(&mut self, sql: &str) -> &mut Self {
        debug_assert!(!sql.contains('?'), "values must be bound, not written into the SQL: {sql}");
        self.sql.push_str(sql);
        self
    }

    /// Appends a `?` and the value it stands for.
    pub fn bind(&mut self, value: impl Into<Param>) -> &mut Self {
        self.sql.push('?');
        self.params.push(value.into());
        self
    }

    /// Appends another statement, text and values.
    pub fn append(&mut self, other: &Statement) -> &mut Self {
        self.sql.push_str(&other.sql);
        self.params.extend(other.params.iter().cloned());
        self
    }

    pub fn text(&self) -> &str {
        &self.sql
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The statement as a `clickhouse` query with every value bound.
    pub fn query(&self, client: &clickhouse::Client) -> clickhouse::query::Query {
        let mut query = client.query(&self.sql);
        for param in &self.params {
            query = match param {
                Param::U64(v) => query.bind(*v),
                Param::F64(v) => query.bind(*v),
                Param::Str(v) => query.bind(v.as_str()),
                Param::U32s(v) => query.bind(v.as_slice()),
                Param::Strs(v) => query.bind(v.as_slice()),
            };
        }
        query
    }

    /// The SQL with every value written in, exactly as the client sends it.
    /// For tests that run the statement elsewhere (chDB) and for debugging;
    /// services always use [`Self::query`].
    pub fn render(&self) -> String {
        self.query(&clickhouse::Client::default()).sql_display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_their_placeholders_through_nesting() {
        let mut inner = Statement::new("SELECT x FROM t WHERE a = ");
        inner.bind("it's").sql(" AND b IN ").sql("(1)");
        let mut outer = Statement::new("SELECT count() FROM (");
        outer.append(&inner).sql(") WHERE has(").bind(&[1u32, 2][..]).sql(", y) AND z > ").bind(2.5);
        assert_eq!(outer.params().len(), 3);
        assert_eq!(
            outer.render(),
            "SELECT count() FROM (SELECT x FROM t WHERE a = 'it\\'s' AND b IN (1)) WHERE has([1,2], y) AND z > 2.5"
        );
    }
}
