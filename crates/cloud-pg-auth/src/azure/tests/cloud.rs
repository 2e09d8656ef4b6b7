//! Cloud names, their constants and the clouds of server host names.

use super::*;

fn check_cloud(input: &str, expected: Option<AzureCloud>) {
    assert_eq!(input.parse::<AzureCloud>().ok(), expected, "{input}");
}

#[test]
fn clouds_parse() {
    check_cloud("public", Some(AzureCloud::Public));
    check_cloud("AzureCloud", Some(AzureCloud::Public));
    check_cloud("usgov", Some(AzureCloud::UsGov));
    check_cloud("AzureUSGovernment", Some(AzureCloud::UsGov));
    check_cloud("us-gov", Some(AzureCloud::UsGov));
    check_cloud("china", Some(AzureCloud::China));
    check_cloud("AzureChinaCloud", Some(AzureCloud::China));
    check_cloud("germany", None);
    check_cloud("", None);
}

#[test]
fn cloud_constants_agree() {
    for cloud in AzureCloud::ALL {
        assert_eq!(cloud.scope(), format!("{}/.default", cloud.audience()));
        assert_eq!(cloud.as_str().parse::<AzureCloud>().unwrap(), cloud);
        assert!(cloud.authority_host().starts_with("https://login."));
        assert_eq!(AzureCloud::for_scope(cloud.scope()), Some(cloud));
        assert_eq!(
            AzureCloud::for_authority(cloud.authority_host()),
            Some(cloud)
        );
        assert_eq!(
            cloud_for_host(&format!("srv{}", cloud.host_suffix())),
            Some(cloud)
        );
    }
    assert_eq!(
        AzureCloud::UsGov.scope(),
        "https://ossrdbms-aad.database.usgovcloudapi.net/.default"
    );
    assert_eq!(
        AzureCloud::China.authority_host(),
        "https://login.chinacloudapi.cn"
    );
}

fn check_host_cloud(host: &str, expected: Option<AzureCloud>) {
    assert_eq!(cloud_for_host(host), expected, "{host}");
}

#[test]
fn hosts_map_to_clouds() {
    check_host_cloud("mydb.postgres.database.azure.com", Some(AzureCloud::Public));
    check_host_cloud(
        "MyDB.Postgres.Database.Azure.Com.",
        Some(AzureCloud::Public),
    );
    check_host_cloud(
        "mydb.privatelink.postgres.database.azure.com",
        Some(AzureCloud::Public),
    );
    check_host_cloud(
        "gov.postgres.database.usgovcloudapi.net",
        Some(AzureCloud::UsGov),
    );
    check_host_cloud(
        "cn.postgres.database.chinacloudapi.cn",
        Some(AzureCloud::China),
    );
    check_host_cloud(".postgres.database.azure.com", None);
    check_host_cloud("postgres.database.azure.com", None);
    check_host_cloud("localhost", None);
    check_host_cloud("db.rds.amazonaws.com", None);
    check_host_cloud("127.0.0.1", None);
}
