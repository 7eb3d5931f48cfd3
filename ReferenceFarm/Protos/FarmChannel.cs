using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;

namespace ReferenceFarm.Protocol;

/// <summary>Makes gRPC channels to a ReferenceFarm server: h2c on loopback, TLS trusting the server's own CA otherwise.</summary>
public static class FarmChannel
{
    /// <summary>The largest message either side sends or accepts (a 10,000-task job is a few megabytes).</summary>
    public const int MaxMessageBytes = 64 * 1024 * 1024;

    /// <summary>Opens a channel.</summary>
    /// <param name="address">The server's URL, <c>http://</c> (loopback) or <c>https://</c>.</param>
    /// <param name="caCertificatePath">A PEM file with the server's CA certificate to trust, or null for the system's roots.</param>
    /// <returns>The channel.</returns>
    public static GrpcChannel Create(Uri address, string? caCertificatePath)
    {
        ArgumentNullException.ThrowIfNull(address);
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            ConnectTimeout = TimeSpan.FromSeconds(10),
        };
        if (!string.IsNullOrWhiteSpace(caCertificatePath))
        {
            var ca = X509CertificateLoader.LoadCertificate(File.ReadAllBytes(caCertificatePath));
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, errors) => Trusts(ca, certificate, errors),
            };
        }

        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            MaxReceiveMessageSize = MaxMessageBytes,
            MaxSendMessageSize = MaxMessageBytes,
            DisposeHttpClient = true,
        });
    }

    /// <summary>The headers that carry a bearer token.</summary>
    /// <param name="token">The token.</param>
    /// <returns>The metadata.</returns>
    public static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    private static bool Trusts(X509Certificate2 ca, X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch) || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    }
}
