#include "common/tls_credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace common {
namespace {

// A file's whole contents. `what` names the option in messages.
absl::StatusOr<std::string> ReadPemFile(const char* what,
                                        const std::string& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return absl::NotFoundError(
        absl::StrCat(what, " \"", path, "\": no such file"));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  if (!in || !(contents << in.rdbuf())) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, " \"", path, "\": cannot read"));
  }
  return contents.str();
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Refuses to prompt for a pass phrase: encrypted keys are not supported.
int NoPassphrase(char*, int, int, void*) { return -1; }

// The first certificate in `pem`, or INVALID_ARGUMENT if there is none.
absl::StatusOr<X509Ptr> FirstCertificate(const char* what,
                                         const std::string& path,
                                         const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", path, "\": no PEM certificate in it"));
  }
  return cert;
}

absl::StatusOr<PkeyPtr> PrivateKey(const char* what, const std::string& path,
                                   const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  PkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", path,
                     "\": no unencrypted PEM private key in it"));
  }
  return key;
}

// Reads a certificate and its key and checks that they belong together.
absl::StatusOr<grpc::SslServerCredentialsOptions::PemKeyCertPair> ReadKeyCert(
    const char* cert_what, const std::string& cert_path, const char* key_what,
    const std::string& key_path) {
  if (cert_path.empty() != key_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        cert_what, " and ", key_what, " must be given together (",
        cert_path.empty() ? key_what : cert_what, " alone is set)"));
  }
  ASSIGN_OR_RETURN(std::string cert_pem, ReadPemFile(cert_what, cert_path));
  ASSIGN_OR_RETURN(std::string key_pem, ReadPemFile(key_what, key_path));
  ASSIGN_OR_RETURN(X509Ptr cert,
                   FirstCertificate(cert_what, cert_path, cert_pem));
  ASSIGN_OR_RETURN(PkeyPtr key, PrivateKey(key_what, key_path, key_pem));
  const bool match = X509_check_private_key(cert.get(), key.get()) == 1;
  ERR_clear_error();
  if (!match) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_what, " \"", key_path, "\" is not the key of ",
                     cert_what, " \"", cert_path, "\""));
  }
  return grpc::SslServerCredentialsOptions::PemKeyCertPair{std::move(key_pem),
                                                           std::move(cert_pem)};
}

absl::StatusOr<std::string> ReadCaFile(const char* what,
                                       const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadPemFile(what, path));
  RETURN_IF_ERROR(FirstCertificate(what, path, pem).status());
  return pem;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureServerCredentials();
  if (options.cert_file.empty() && options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_client_ca needs tls_cert and tls_key (the server's own "
        "certificate)");
  }
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ASSIGN_OR_RETURN(auto pair, ReadKeyCert("tls_cert", options.cert_file,
                                          "tls_key", options.key_file));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!options.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadCaFile("tls_client_ca", options.client_ca_file));
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ClientTlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadCaFile("tls_ca", options.ca_file));
  }
  if (!options.cert_file.empty() || !options.key_file.empty()) {
    ASSIGN_OR_RETURN(auto pair, ReadKeyCert("tls_cert", options.cert_file,
                                            "tls_key", options.key_file));
    ssl.pem_private_key = std::move(pair.private_key);
    ssl.pem_cert_chain = std::move(pair.cert_chain);
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace common
