use super::*;

fn user(name: &str, role: Role) -> Identity {
    Identity::User {
        name: name.into(),
        role,
    }
}

#[test]
fn method_table() {
    let admin = user("root", Role::Admin);
    let alice = user("alice", Role::User);
    let viewer = user("vic", Role::Viewer);
    let node = Identity::Node("gpu-a".into());
    let ctl = Identity::Controller(2);
    let cases: &[(&Identity, &str, bool)] = &[
        (&ctl, "/berth.internal.v1.RaftService/Send", true),
        (&node, "/berth.internal.v1.RaftService/Send", false),
        (&admin, "/berth.internal.v1.RaftService/Send", false),
        (&node, "/berth.internal.v1.ControlPlane/Report", true),
        (
            &node,
            "/berth.internal.v1.ControlPlane/RenewCertificate",
            true,
        ),
        (
            &alice,
            "/berth.internal.v1.ControlPlane/RenewCertificate",
            false,
        ),
        (&admin, "/berth.internal.v1.ControlPlane/Register", false),
        (&ctl, "/berth.internal.v1.ControlPlane/Register", false),
        (&node, "/berth.v1.JobService/SubmitJob", false),
        (&node, "/berth.v1.ControllerService/ListMembers", true),
        (&viewer, "/berth.v1.JobService/ListJobs", true),
        (&viewer, "/berth.v1.JobService/SubmitJob", false),
        (&alice, "/berth.v1.JobService/SubmitJob", true),
        (&alice, "/berth.v1.JobService/SetQuota", false),
        (&admin, "/berth.v1.JobService/SetQuota", true),
        (&alice, "/berth.v1.ImageService/RemoveImage", false),
        (&alice, "/berth.v1.ImageService/PushImage", true),
        (&alice, "/berth.v1.ImageService/BuildImage", true),
        (&viewer, "/berth.v1.ImageService/BuildImage", false),
        (&node, "/berth.v1.ImageService/BuildImage", false),
        (&alice, "/berth.v1.AccessService/CreateToken", false),
        (&viewer, "/berth.v1.AccessService/WhoAmI", true),
        (&alice, "/berth.v1.ControllerService/AddMember", false),
        (&viewer, "/berth.v1.ControllerService/Backup", false),
        (&admin, "/berth.v1.ControllerService/Backup", true),
        (&alice, "/berth.v1.ControllerService/TransferLeader", false),
        (&admin, "/berth.v1.ControllerService/TransferLeader", true),
        (&viewer, "/berth.v1.NodeService/ListNodes", true),
        (&alice, "/berth.v1.NodeService/CordonNode", false),
        (&alice, "/berth.v1.NodeService/DrainNode", false),
        (&viewer, "/berth.v1.NodeService/RemoveNode", false),
        (&admin, "/berth.v1.NodeService/RemoveNode", true),
        (&viewer, "/berth.v1.UsageService/GetUsage", true),
        (&node, "/berth.v1.UsageService/GetUsage", false),
        (&alice, "/berth.v1.Unknown/Thing", false),
        (&admin, "/berth.v1.Unknown/Thing", true),
    ];
    for (id, path, want) in cases {
        assert_eq!(
            authorize(id, &Action::Call(path)).is_ok(),
            *want,
            "{} calling {path}",
            id.describe()
        );
    }
}

#[test]
fn no_credentials_reach_only_health() {
    assert!(admit(None, "/grpc.health.v1.Health/Check").is_ok());
    // Joining carries its token in the request, checked by the handler.
    assert!(admit(None, "/berth.internal.v1.ControlPlane/Join").is_ok());
    let e = admit(None, "/berth.v1.JobService/ListJobs").unwrap_err();
    assert_eq!(e.code, Code::Unauthenticated);
    let e = admit(None, "/berth.internal.v1.RaftService/Send").unwrap_err();
    assert_eq!(e.code, Code::Unauthenticated);
}

#[test]
fn only_owners_and_admins_act_on_jobs() {
    let on = |owner| Action::OnJob {
        owner,
        verb: "stop",
    };
    assert!(authorize(&user("alice", Role::User), &on("alice")).is_ok());
    assert!(authorize(&user("root", Role::Admin), &on("alice")).is_ok());
    let e = authorize(&user("bob", Role::User), &on("alice")).unwrap_err();
    assert_eq!(e.code, Code::PermissionDenied);
    assert!(e.message.contains("jobs.owner-or-admin"), "{}", e.message);
    assert!(authorize(&user("alice", Role::Viewer), &on("alice")).is_err());
    assert!(authorize(&Identity::Node("alice".into()), &on("alice")).is_err());
}

#[test]
fn priority_above_the_ceiling_needs_an_admin() {
    let high = Action::Submit {
        priority: 101,
        ceiling: 100,
    };
    assert!(authorize(&user("alice", Role::User), &high).is_err());
    assert!(authorize(&user("root", Role::Admin), &high).is_ok());
    let ok = Action::Submit {
        priority: 100,
        ceiling: 100,
    };
    assert!(authorize(&user("alice", Role::User), &ok).is_ok());
}
