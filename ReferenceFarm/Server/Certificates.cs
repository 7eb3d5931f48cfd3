using System.Net;
using System.Net.NetworkInformation;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ReferenceFarm.Server;

/// <summary>The server's own certificate authority and server certificate, generated once and kept in the data folder.</summary>
public static class Certificates
{
    /// <summary>Loads the server certificate, generating the CA and the certificate on first use.</summary>
    /// <param name="dataDirectory">The data folder (certificates go in <c>tls/</c>).</param>
    /// <param name="extraHost">The host name or address the server listens on, added to the certificate's names.</param>
    /// <returns>The server certificate with its key, and the CA's SHA-256 fingerprint.</returns>
    public static (X509Certificate2 Server, string CaFingerprint, string CaPath) LoadOrCreate(string dataDirectory, string extraHost)
    {
        var folder = Path.Combine(dataDirectory, "tls");
        Directory.CreateDirectory(folder);
        var caPath = Path.Combine(folder, "ca.pem");
        var caKeyPath = Path.Combine(folder, "ca.key");
        var serverPfx = Path.Combine(folder, "server.pfx");
        if (!File.Exists(caPath) || !File.Exists(caKeyPath))
        {
            using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=ReferenceFarm CA", caKey, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            using var ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(10));
            WritePrivate(caKeyPath, caKey.ExportPkcs8PrivateKeyPem());
            File.WriteAllText(caPath, ca.ExportCertificatePem());
            if (File.Exists(serverPfx))
            {
                File.Delete(serverPfx);
            }
        }

        using var caCertificate = X509Certificate2.CreateFromPemFile(caPath, caKeyPath);
        var fingerprint = Convert.ToHexString(caCertificate.GetCertHash(HashAlgorithmName.SHA256));
        var names = Names(extraHost);
        var namesFile = serverPfx + ".names";
        if (!File.Exists(serverPfx) || !File.Exists(namesFile) || File.ReadAllText(namesFile) != string.Join(",", names))
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=ReferenceFarm server", key, HashAlgorithmName.SHA256);
            var san = new SubjectAlternativeNameBuilder();
            foreach (var name in names)
            {
                if (IPAddress.TryParse(name, out var address))
                {
                    san.AddIpAddress(address);
                }
                else
                {
                    san.AddDnsName(name);
                }
            }

            request.CertificateExtensions.Add(san.Build());
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
            using var issued = request.Create(caCertificate, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(5),
                RandomNumberGenerator.GetBytes(16));
            using var withKey = issued.CopyWithPrivateKey(key);
            WritePrivateBytes(serverPfx, withKey.Export(X509ContentType.Pfx));
            File.WriteAllText(namesFile, string.Join(",", names));
        }

        return (X509CertificateLoader.LoadPkcs12FromFile(serverPfx, null), fingerprint, caPath);
    }

    private static List<string> Names(string extraHost)
    {
        var names = new SortedSet<string>(StringComparer.Ordinal) { "localhost", "127.0.0.1", "::1", Dns.GetHostName() };
        if (!string.IsNullOrWhiteSpace(extraHost) && extraHost is not ("0.0.0.0" or "::" or "*" or "+"))
        {
            names.Add(extraHost.Trim('[', ']'));
        }

        foreach (var network in NetworkInterface.GetAllNetworkInterfaces())
        {
            foreach (var address in network.GetIPProperties().UnicastAddresses)
            {
                if (address.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
                {
                    names.Add(address.Address.ToString());
                }
            }
        }

        return [.. names];
    }

    /// <summary>Writes a secret file readable by its owner only (mode 600).</summary>
    /// <param name="path">The file.</param>
    /// <param name="text">The content.</param>
    public static void WritePrivate(string path, string text) => WritePrivateBytes(path, System.Text.Encoding.UTF8.GetBytes(text));

    private static void WritePrivateBytes(string path, byte[] bytes)
    {
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var stream = new FileStream(path, options))
        {
            stream.Write(bytes);
        }

        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }
}
