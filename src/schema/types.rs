//! Whether a type change can lose data: widening (a longer string, a bigger integer, more
//! digits) is safe; everything else is treated as narrowing, which `diff` writes only with
//! `--allow-destructive`.

/// A type split into its name, its numbers and whether it is unsigned.
struct Parsed {
    base: String,
    args: Vec<u64>,
    unsigned: bool,
}

fn parse(t: &str) -> Parsed {
    let t = t.trim().to_ascii_lowercase();
    let unsigned = t.contains(" unsigned");
    let t = t.replace(" unsigned", "").replace(" zerofill", "");
    let (base, args) = match t.split_once('(') {
        Some((b, rest)) => {
            let inner = rest.split(')').next().unwrap_or("");
            let args = inner
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect();
            // `timestamp(3) with time zone`: the words after the numbers belong to the name.
            let tail = rest.split_once(')').map(|(_, t)| t.trim()).unwrap_or("");
            (format!("{} {tail}", b.trim()).trim().to_owned(), args)
        }
        None => (t.clone(), Vec::new()),
    };
    Parsed {
        base,
        args,
        unsigned,
    }
}

fn int_rank(base: &str) -> Option<u8> {
    Some(match base {
        "tinyint" | "int1" => 1,
        "smallint" | "int2" => 2,
        "mediumint" | "int3" => 3,
        "int" | "integer" | "int4" => 4,
        "bigint" | "int8" => 5,
        _ => return None,
    })
}

fn float_rank(base: &str) -> Option<u8> {
    Some(match base {
        "real" | "float" | "float4" => 1,
        "double" | "double precision" | "float8" => 2,
        _ => return None,
    })
}

/// Characters (or bytes) a string type holds; `None` for unbounded.
fn capacity(p: &Parsed) -> Option<Option<u64>> {
    let n = p.args.first().copied();
    Some(match p.base.as_str() {
        "char" | "character" | "bpchar" | "nchar" => Some(n.unwrap_or(1)),
        "varchar" | "character varying" | "nvarchar" | "varchar2" => n,
        "tinytext" => Some(255),
        // MySQL's `text` holds 64 KiB; elsewhere it is unbounded. Counted as the smaller, so
        // `mediumtext` to `text` narrows (and `varchar(70000)` to `text` asks to be allowed).
        "text" | "clob" => Some(65_535),
        "mediumtext" => Some(16_777_215),
        "longtext" => Some(4_294_967_295),
        _ => return None,
    })
}

fn byte_capacity(p: &Parsed) -> Option<Option<u64>> {
    let n = p.args.first().copied();
    Some(match p.base.as_str() {
        "binary" => Some(n.unwrap_or(1)),
        "varbinary" => n,
        "tinyblob" => Some(255),
        "blob" => Some(65_535),
        "mediumblob" => Some(16_777_215),
        "longblob" => Some(4_294_967_295),
        "bytea" => None,
        _ => return None,
    })
}

fn holds(from: Option<u64>, to: Option<u64>) -> bool {
    match (from, to) {
        (_, None) => true,
        // An unbounded `character varying` to `text`: both unbounded on PostgreSQL.
        (None, Some(65_535)) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => b >= a,
    }
}

/// True when changing a column from type `from` to `to` can lose or refuse values.
pub fn narrows(from: &str, to: &str) -> bool {
    if from.eq_ignore_ascii_case(to) {
        return false;
    }
    let (f, t) = (parse(from), parse(to));
    if let (Some(a), Some(b)) = (int_rank(&f.base), int_rank(&t.base)) {
        // Display widths (`int(11)`) do not bound values.
        return match (f.unsigned, t.unsigned) {
            (false, false) | (true, true) => b < a,
            (true, false) => b <= a,
            (false, true) => true,
        };
    }
    if let (Some(a), Some(b)) = (float_rank(&f.base), float_rank(&t.base)) {
        return b < a;
    }
    if let (Some(a), Some(b)) = (capacity(&f), capacity(&t)) {
        return !holds(a, b);
    }
    if let (Some(a), Some(b)) = (byte_capacity(&f), byte_capacity(&t)) {
        return !holds(a, b);
    }
    let decimal = |b: &str| matches!(b, "decimal" | "numeric" | "dec");
    if decimal(&f.base) && decimal(&t.base) {
        return match (f.args.as_slice(), t.args.as_slice()) {
            (_, []) if t.base == "numeric" => false,
            ([p1], [p2]) => p2 < p1,
            ([p1, s1], [p2, s2]) => p2 - s2.min(p2) < p1 - s1.min(p1) || s2 < s1,
            ([p1], [p2, s2]) => p2 - s2.min(p2) < *p1,
            _ => true,
        };
    }
    // Same name with larger numbers (`timestamp(3)` → `timestamp(6)`, `bit(8)` → `bit(16)`).
    if f.base == t.base && f.args.len() == t.args.len() && !f.args.is_empty() {
        return f.args.iter().zip(&t.args).any(|(a, b)| b < a);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::narrows;

    #[test]
    fn widening_is_safe_and_everything_else_narrows() {
        for (from, to) in [
            ("varchar(50)", "varchar(100)"),
            ("character varying(50)", "character varying(200)"),
            ("character varying(50)", "text"),
            ("varchar(255)", "text"),
            ("int(11)", "bigint(20)"),
            ("int(11)", "int(10)"),
            ("smallint", "integer"),
            ("integer", "bigint"),
            ("int(10) unsigned", "bigint(20)"),
            ("decimal(10,2)", "decimal(12,2)"),
            ("numeric(10,2)", "numeric"),
            ("real", "double precision"),
            ("timestamp(3) with time zone", "timestamp(6) with time zone"),
            ("text", "TEXT"),
        ] {
            assert!(!narrows(from, to), "{from} -> {to} widens");
        }
        for (from, to) in [
            ("varchar(100)", "varchar(50)"),
            ("text", "varchar(255)"),
            ("bigint", "integer"),
            ("int(11)", "int(10) unsigned"),
            ("decimal(10,2)", "decimal(10,1)"),
            ("decimal(10,2)", "decimal(9,2)"),
            ("varchar(10)", "integer"),
            ("double", "float"),
            ("text", "integer"),
            ("mediumtext", "text"),
            ("longtext", "text"),
        ] {
            assert!(narrows(from, to), "{from} -> {to} narrows");
        }
    }
}
