use super::*;

const STACK: &str = "name: shop\ninstances: { share: [db, cache], fresh: [] }\nservices:\n  db:\n    image: postgres:15\n    environment: { POSTGRES_USER: u, POSTGRES_PASSWORD: p, POSTGRES_DB: shop }\n    ports: [\"5432\"]\n    ready: { postgres: {} }\n  cache:\n    image: redis:7\n    ports: [\"6379\"]\n    ready: { redis: {} }\n  web:\n    command: serve --db ${db:db} --redis ${db:cache}\n    environment:\n      DATABASE_URL: postgresql://u:p@127.0.0.1:${port:db:5432}/${db:db}\n      REDIS_URL: redis://127.0.0.1:${port:cache:6379}/${db:cache}\n      COST: $$5\n    depends_on: [db, cache]\n";

fn share(service: &str, kind: ShareKind, value: &str) -> Share {
    Share {
        service: service.into(),
        kind,
        value: value.into(),
        fresh: false,
        made: None,
        foreign: None,
    }
}

#[test]
fn database_names_table() {
    let long = "x".repeat(70);
    let cases: &[(&str, &str, &str)] = &[
        ("shop", "feature-x", "shop_feature_x"),
        ("Shop", "b", "shop_b"),
        ("shop-db", "agent_2", "shop_db_agent_2"),
        ("1db", "a", "_1db_a"),
    ];
    for (main, instance, want) in cases {
        assert_eq!(database_name(main, instance), *want, "{main} {instance}");
    }
    let (a, b) = (database_name(&long, "a"), database_name(&long, "b"));
    assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
    assert_ne!(a, b, "cut names stay distinct");
}

#[test]
fn redis_indexes_are_the_first_free_one() {
    assert_eq!(pick_redis_index(&BTreeSet::new()), Some(1));
    assert_eq!(pick_redis_index(&BTreeSet::from([1, 2, 4])), Some(3));
    assert_eq!(pick_redis_index(&(1..=15).collect()), None);
}

#[test]
fn shares_are_planned_once_and_kept() {
    let stack = crate::config::test_stack(STACK);
    let share_all = stack.instances.share.clone();
    assert_eq!(
        plan(&stack, None, &share_all, None, &BTreeSet::new()),
        Ok(vec![]),
        "the main instance shares nothing"
    );
    let planned = plan(&stack, Some("feat"), &share_all, None, &BTreeSet::from([1])).unwrap();
    assert_eq!(
        planned,
        [
            share("db", ShareKind::Postgres, "shop_feat"),
            share("cache", ShareKind::Redis, "2"),
        ]
    );
    let record = Record {
        main: "shop".into(),
        shares: vec![share("cache", ShareKind::Redis, "7")],
    };
    let again = plan(
        &stack,
        Some("feat"),
        &share_all,
        Some(&record),
        &BTreeSet::new(),
    )
    .unwrap();
    assert_eq!(again[1].value, "7", "the recorded index is kept");
    assert_eq!(
        plan(
            &stack,
            Some("feat"),
            &["web".into()],
            None,
            &BTreeSet::new()
        ),
        Err(PlanError::NotShareable {
            service: "web".into()
        })
    );
    assert_eq!(
        plan(&stack, Some("feat"), &share_all, None, &(1..=15).collect()),
        Err(PlanError::NoRedisIndex {
            service: "cache".into()
        })
    );
}

#[test]
fn a_thin_stack_leaves_the_shared_services_out_and_points_at_the_main_ones() {
    let mut stack = crate::config::test_stack(STACK);
    let shares = [
        share("db", ShareKind::Postgres, "shop_feat"),
        share("cache", ShareKind::Redis, "3"),
    ];
    let main_ports = MainPorts::from([
        (("db".into(), 5432), 41000),
        (("cache".into(), 6379), 41001),
    ]);
    apply(&mut stack, &shares, &main_ports);
    assert_eq!(stack.services.keys().collect::<Vec<_>>(), ["web"]);
    let web = &stack.services["web"];
    assert!(web.depends_on.is_empty(), "{:?}", web.depends_on);
    let env = &web.environment;
    assert_eq!(
        env["DATABASE_URL"],
        "postgresql://u:p@127.0.0.1:41000/shop_feat"
    );
    assert_eq!(env["REDIS_URL"], "redis://127.0.0.1:41001/3");
    assert_eq!(env["COST"], "$$5", "still escaped for the last pass");
    assert_eq!(env["DEVSTACK_DB_DB"], "shop_feat");
    assert_eq!(env["DEVSTACK_DB_5432"], "41000");
    assert_eq!(env["DEVSTACK_CACHE_DB"], "3");
    assert!(
        matches!(&web.kind, crate::config::ServiceKind::Process { command: Command::Shell(c), .. } if c == "serve --db shop_feat --redis 3"),
        "{:?}",
        web.kind
    );
}

#[test]
fn what_only_the_shared_services_need_is_left_out_too() {
    // The reference stack's shape: ZooKeeper and the image tasks serve only the shared
    // containers; the venv task serves the apps; a lone container stays.
    let yaml = "name: shop\ninstances: { share: [db, kafka] }\nservices:\n  base:\n    command: 'true'\n    task: {}\n  venv:\n    command: 'true'\n    task: {}\n  zk:\n    image: zk\n    depends_on: { base: completed }\n  kafka:\n    image: kafka\n    ports: [\"9092\"]\n    ready: { kafka: {} }\n    depends_on: { zk: started, base: completed }\n  db:\n    image: postgres:15\n    environment: { POSTGRES_USER: u, POSTGRES_PASSWORD: p, POSTGRES_DB: shop }\n    ports: [\"5432\"]\n    ready: { postgres: {} }\n    depends_on: { base: completed }\n  mail:\n    image: mailpit\n  web:\n    command: serve\n    depends_on: { db: ready, kafka: ready, venv: completed }\n";
    let mut stack = crate::config::test_stack(yaml);
    let shares = [
        share("db", ShareKind::Postgres, "shop_feat"),
        share("kafka", ShareKind::Kafka, "feat."),
    ];
    apply(&mut stack, &shares, &MainPorts::new());
    let mut left: Vec<_> = stack.services.keys().map(String::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["mail", "venv", "web"]);

    // Something of the instance's own that needs ZooKeeper keeps it, and what it needs.
    let mut stack = crate::config::test_stack(&yaml.replace(
        "  mail:\n    image: mailpit\n",
        "  mail:\n    image: mailpit\n    depends_on: { zk: started }\n",
    ));
    apply(&mut stack, &shares, &MainPorts::new());
    let mut left: Vec<_> = stack.services.keys().map(String::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["base", "mail", "venv", "web", "zk"]);

    // A port reference is a need too.
    let mut stack = crate::config::test_stack(&yaml.replace(
        "  mail:\n    image: mailpit\n",
        "  mail:\n    image: mailpit\n    environment: { ZK: \"127.0.0.1:${port:zk:2181}\" }\n",
    ).replace("  zk:\n    image: zk\n", "  zk:\n    image: zk\n    ports: [\"2181\"]\n"));
    apply(&mut stack, &shares, &MainPorts::new());
    let mut left: Vec<_> = stack.services.keys().map(String::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["base", "mail", "venv", "web", "zk"]);
}

#[test]
fn the_main_instance_resolves_its_own_names() {
    let mut stack = crate::config::test_stack(STACK);
    apply(&mut stack, &[], &MainPorts::new());
    assert_eq!(stack.services.len(), 3);
    let env = &stack.services["web"].environment;
    assert_eq!(
        env["DATABASE_URL"],
        "postgresql://u:p@127.0.0.1:${port:db:5432}/shop"
    );
    assert_eq!(env["REDIS_URL"], "redis://127.0.0.1:${port:cache:6379}/0");
    assert!(!env.contains_key("DEVSTACK_DB_DB"));
}

#[test]
fn a_record_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(load_record(tmp.path()), None);
    let record = Record {
        main: "shop".into(),
        shares: vec![
            Share {
                made: Some(Made::Dump),
                ..share("db", ShareKind::Postgres, "shop_b")
            },
            Share {
                foreign: Some(vec!["b.orders".into()]),
                ..share("events", ShareKind::Kafka, "b.")
            },
        ],
    };
    save_record(tmp.path(), &record).unwrap();
    assert_eq!(load_record(tmp.path()), Some(record));
}

#[test]
fn a_prefix_share_owns_what_it_made_only() {
    let names: Vec<String> = [
        "b.orders",
        "b.invoices",
        "orders",
        "bb.x",
        "__consumer_offsets",
    ]
    .map(String::from)
    .to_vec();
    let foreign = ["b.orders".to_string()];
    type Case<'a> = (&'a str, Option<&'a [String]>, &'a [&'a str]);
    let cases: &[Case] = &[
        // Listed before it first ran: the main instance's `b.orders` is not its own.
        ("b.", Some(&foreign), &["b.invoices"]),
        // Never listed (a record from before the list was kept): every prefixed name.
        ("b.", None, &["b.orders", "b.invoices"]),
        ("b.", Some(&[]), &["b.orders", "b.invoices"]),
        // An empty prefix owns nothing.
        ("", None, &[]),
    ];
    for (prefix, foreign, want) in cases {
        assert_eq!(&own(&names, prefix, *foreign), want, "{prefix} {foreign:?}");
    }
}

#[test]
fn a_later_plan_keeps_the_names_listed_before() {
    let stack = crate::config::test_stack(
        "name: shop\nservices:\n  events:\n    image: kafka\n    ports: [\"9092\"]\n    ready: { kafka: {} }\n",
    );
    let recorded = Record {
        main: "shop".into(),
        shares: vec![Share {
            foreign: Some(vec!["b.orders".into()]),
            ..share("events", ShareKind::Kafka, "b.")
        }],
    };
    let shares = plan(
        &stack,
        Some("b"),
        &["events".into()],
        Some(&recorded),
        &BTreeSet::new(),
    )
    .unwrap();
    assert_eq!(shares[0].foreign, Some(vec!["b.orders".to_string()]));
    let first = plan(
        &stack,
        Some("b"),
        &["events".into()],
        None,
        &BTreeSet::new(),
    )
    .unwrap();
    assert_eq!(
        first[0].foreign, None,
        "listed when the share is first made"
    );
    // A record from before the list was kept: nothing is taken for foreign.
    let old = Record {
        main: "shop".into(),
        shares: vec![share("events", ShareKind::Kafka, "b.")],
    };
    let again = plan(
        &stack,
        Some("b"),
        &["events".into()],
        Some(&old),
        &BTreeSet::new(),
    );
    assert_eq!(again.unwrap()[0].foreign, Some(vec![]));
}
