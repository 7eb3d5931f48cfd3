using System.Diagnostics;
using System.Text.Json;
using FarmPlugins.TestSupport;

namespace FarmPlugins.Qarnot.Tests;

/// <summary>
/// The real S3 server of the tests: npm's <c>@20minutes/s3rver</c> 5.0.0 (plain <c>s3rver</c> corrupts AWSSDK.S3 4.x
/// uploads), started from a few lines of Node on a free port and stopped by its pid. Extra key pairs (Qarnot's
/// email/token) are registered so the adapter signs in with the credentials the protocol gives.
/// </summary>
public sealed class S3rverServer : IAsyncDisposable
{
    private const string Launcher = """
        const path = require('path');
        const dir = path.join(process.env.S3RVER_DIR, 'node_modules', '@20minutes', 's3rver');
        const S3rver = require(dir);
        const AWSAccount = require(path.join(dir, 'lib', 'models', 'account'));
        for (const [key, secret] of JSON.parse(process.env.S3RVER_KEYS || '[]')) {
          AWSAccount.DUMMY_ACCOUNT.createKeyPair(key, secret);
        }
        new S3rver({
          address: '127.0.0.1', port: Number(process.env.S3RVER_PORT), directory: process.env.S3RVER_DATA,
          silent: true, allowMismatchedSignatures: true,
        }).run((err, address) => {
          if (err) { console.error(String(err)); process.exit(1); }
          console.log('READY ' + address.port);
        });
        """;

    private readonly TempDir _dir = new("s3rver");
    private Process? _process;

    public Uri Url { get; private set; } = null!;

    /// <summary>The Node process's id (the upload bench reads its CPU time).</summary>
    public int ProcessId => _process?.Id ?? throw new InvalidOperationException("s3rver is not running");

    public static string PackageDirectory
    {
        get
        {
            var configured = Environment.GetEnvironmentVariable("FARM_TEST_S3RVER_DIR");
            if (!string.IsNullOrEmpty(configured))
            {
                return configured;
            }

            var folder = AppContext.BaseDirectory;
            while (folder is not null && !File.Exists(Path.Combine(folder, "FarmPlugins.sln")))
            {
                folder = Path.GetDirectoryName(folder);
            }

            return Path.Combine(folder ?? ".", ".tools", "s3rver");
        }
    }

    public static async Task<S3rverServer> StartAsync(IReadOnlyList<(string Key, string Secret)> keys)
    {
        var package = PackageDirectory;
        if (!File.Exists(Path.Combine(package, "node_modules", "@20minutes", "s3rver", "package.json")))
        {
            throw new InvalidOperationException(
                $"@20minutes/s3rver is not installed in {package}: run ./scripts/test once, or `mkdir -p .tools/s3rver && cd .tools/s3rver && npm install --prefix . @20minutes/s3rver@5.0.0` (or set FARM_TEST_SKIP=s3).");
        }

        var node = Components.RequireExecutable("node", "apt-get install -y nodejs");
        var server = new S3rverServer();
        var launcher = server._dir.WriteFile("launch.js", Launcher);
        Directory.CreateDirectory(server._dir.Combine("data"));
        for (var attempt = 0; ; attempt++)
        {
            var port = FreePort.Get();
            // s3rver signs listing continuation tokens with DES, which OpenSSL 3 only has in its legacy provider:
            // without it every truncated ListObjectsV2 answers InternalError.
            var info = new ProcessStartInfo(node, ["--openssl-legacy-provider", launcher])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            info.Environment["S3RVER_DIR"] = package;
            info.Environment["S3RVER_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
            info.Environment["S3RVER_DATA"] = server._dir.Combine("data");
            info.Environment["S3RVER_KEYS"] = JsonSerializer.Serialize(keys.Select(k => new[] { k.Key, k.Secret }));
            var process = Process.Start(info) ?? throw new InvalidOperationException("node did not start");
            var ready = await ReadReadyAsync(process);
            if (ready)
            {
                server._process = process;
                server.Url = new Uri($"http://127.0.0.1:{port}");
                _ = process.StandardOutput.ReadToEndAsync();
                _ = process.StandardError.ReadToEndAsync();
                return server;
            }

            var error = await process.StandardError.ReadToEndAsync();
            process.Kill();
            process.Dispose();
            if (attempt >= 2)
            {
                await server.DisposeAsync();
                throw new InvalidOperationException($"s3rver did not start: {error}");
            }
        }
    }

    private static async Task<bool> ReadReadyAsync(Process process)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            while (await process.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
            {
                if (line.StartsWith("READY", StringComparison.Ordinal))
                {
                    return true;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        return false;
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            ProcessTracker.Kill(_process.Id);
            await _process.WaitForExitAsync();
            _process.Dispose();
        }

        _dir.Dispose();
    }
}
