//! API clients for users other than the first admin: adds the user through the admin's API and
//! issues them a credential, as `skiff user add` and `skiff user credential` do.

use skiff_cluster::api::client::ApiClient;
use skiff_cluster::credential::Credential;
use skiff_cluster::identity;
use skiff_cluster::state::{Quotas, UserRole};

use crate::inprocess::TestCluster;

/// Adds user `name` with `role` (no quotas) and returns a client holding their credential.
pub async fn user_client(c: &TestCluster, name: &str, role: UserRole) -> ApiClient {
    let admin = c.client();
    admin
        .add_user(name, role, Quotas::default())
        .await
        .expect("add user");
    let cred = credential_for(&admin, &c.cred, name).await;
    ApiClient::new(&cred).expect("client")
}

/// A credential for the existing user `name`, issued through the API by `by`.
pub async fn credential_for(by: &ApiClient, base: &Credential, name: &str) -> Credential {
    let kc = identity::new_key_and_csr(name).expect("key");
    let issued = by
        .issue_credential(name, &kc.csr_pem, false)
        .await
        .expect("issue credential");
    Credential {
        cluster_id: issued.cluster_id,
        user: issued.user,
        endpoints: base.endpoints.clone(),
        ca_pem: issued.ca_pem,
        cert_pem: issued.cert_pem,
        key_pem: kc.key_pem,
    }
}
