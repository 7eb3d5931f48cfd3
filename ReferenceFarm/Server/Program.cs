using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using ReferenceFarm.Server;

// `server [--listen URL] [--data DIR] [timings]`, `server add-client NAME [--admin] --data DIR`, `server remove-client NAME --data DIR`.
return await ServerProgram.RunAsync(args).ConfigureAwait(false);

/// <summary>The server's entry point and command line.</summary>
public static class ServerProgram
{
    private const string Usage = """
        usage: ReferenceFarm.Server [server] [--listen URL] [--data DIR] [--lease-ms N] [--heartbeat-ms N] [--restart-grace-ms N]
                                    [--lease-check-ms N] [--blocklist-after N] [--blob-grace-ms N] [--blob-sweep-ms N]
               ReferenceFarm.Server add-client NAME [--admin] --data DIR
               ReferenceFarm.Server remove-client NAME --data DIR
        """;

    /// <summary>Runs a verb.</summary>
    /// <param name="args">The command line.</param>
    /// <returns>The exit code: 0 done, 2 bad usage, 1 failure.</returns>
    public static async Task<int> RunAsync(string[] args)
    {
        var list = args.ToList();
        var verb = list.Count > 0 && !list[0].StartsWith('-') ? list[0] : "server";
        if (list.Count > 0 && !list[0].StartsWith('-'))
        {
            list.RemoveAt(0);
        }

        try
        {
            return verb switch
            {
                "server" => await ServeAsync(list).ConfigureAwait(false),
                "add-client" => await AddClientAsync(list).ConfigureAwait(false),
                "remove-client" => await RemoveClientAsync(list).ConfigureAwait(false),
                "help" or "--help" or "-h" => PrintUsage(0),
                _ => throw new ArgumentException($"unknown verb '{verb}'"),
            };
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}\n{Usage}").ConfigureAwait(false);
            return 2;
        }
    }

    private static int PrintUsage(int code)
    {
        Console.WriteLine(Usage);
        return code;
    }

    private static string? Take(List<string> args, string name)
    {
        var i = args.IndexOf(name);
        if (i < 0)
        {
            return null;
        }

        if (i + 1 >= args.Count)
        {
            throw new ArgumentException($"{name} needs a value");
        }

        var value = args[i + 1];
        args.RemoveRange(i, 2);
        return value;
    }

    private static bool Flag(List<string> args, string name) => args.Remove(name);

    private static TimeSpan? Milliseconds(List<string> args, string name)
    {
        var text = Take(args, name);
        if (text is null)
        {
            return null;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) || ms <= 0)
        {
            throw new ArgumentException($"{name} must be a positive whole number of milliseconds, not '{text}'");
        }

        return TimeSpan.FromMilliseconds(ms);
    }

    private static void NoLeftovers(List<string> args)
    {
        if (args.Count > 0)
        {
            throw new ArgumentException($"unexpected argument '{args[0]}'");
        }
    }

    private static string ClientName(List<string> args)
    {
        if (args.Count == 0 || args[0].StartsWith('-'))
        {
            throw new ArgumentException("a client NAME is required");
        }

        var name = args[0];
        args.RemoveAt(0);
        if (name.Length > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') || name.StartsWith('.'))
        {
            throw new ArgumentException($"NAME '{name}' must be 1-64 letters, digits, '-', '_' or '.'");
        }

        if (name is "agent")
        {
            throw new ArgumentException("NAME 'agent' is reserved for the agent token");
        }

        return name;
    }

    private static async Task<int> AddClientAsync(List<string> args)
    {
        var name = ClientName(args);
        var admin = Flag(args, "--admin");
        var data = Take(args, "--data") ?? throw new ArgumentException("--data DIR is required");
        NoLeftovers(args);
        var store = await Store.OpenAsync(data, TimeProvider.System).ConfigureAwait(false);
        await using (store.ConfigureAwait(false))
        {
            if (await store.HasTokenNamedAsync(name).ConfigureAwait(false))
            {
                // Replacing it silently would cut off whoever holds the current token.
                throw new ArgumentException($"client '{name}' exists already; remove-client it first to issue a new token");
            }

            var token = await store.AddTokenAsync(name, "client", admin).ConfigureAwait(false);
            var folder = Path.Combine(data, "clients");
            Directory.CreateDirectory(folder);
            var path = Path.Combine(folder, name + ".token");
            Certificates.WritePrivate(path, token + "\n");
            Console.WriteLine($"client '{name}'{(admin ? " (admin)" : string.Empty)}: token written to {path}");
        }

        return 0;
    }

    private static async Task<int> RemoveClientAsync(List<string> args)
    {
        var name = ClientName(args);
        var data = Take(args, "--data") ?? throw new ArgumentException("--data DIR is required");
        NoLeftovers(args);
        var store = await Store.OpenAsync(data, TimeProvider.System).ConfigureAwait(false);
        await using (store.ConfigureAwait(false))
        {
            var removed = await store.RemoveTokenAsync(name).ConfigureAwait(false);
            var path = Path.Combine(data, "clients", name + ".token");
            if (File.Exists(path))
            {
                File.Delete(path);
            }

            Console.WriteLine(removed ? $"client '{name}' revoked" : $"no client '{name}'");
            return removed ? 0 : 1;
        }
    }

    private static async Task<int> ServeAsync(List<string> args)
    {
        var options = new ServerOptions();
        var listen = Take(args, "--listen");
        if (listen is not null)
        {
            options.Listen = Uri.TryCreate(listen, UriKind.Absolute, out var url) ? url : throw new ArgumentException($"--listen '{listen}' is not a URL");
        }

        options.DataDirectory = Path.GetFullPath(Take(args, "--data") ?? options.DataDirectory);
        options.Lease = Milliseconds(args, "--lease-ms") ?? options.Lease;
        options.Heartbeat = Milliseconds(args, "--heartbeat-ms") ?? options.Heartbeat;
        options.RestartGrace = Milliseconds(args, "--restart-grace-ms") ?? options.Lease;
        options.LeaseCheckInterval = Milliseconds(args, "--lease-check-ms") ?? options.LeaseCheckInterval;
        options.BlobGrace = Milliseconds(args, "--blob-grace-ms") ?? options.BlobGrace;
        options.BlobSweepInterval = Milliseconds(args, "--blob-sweep-ms") ?? options.BlobSweepInterval;
        var blocklist = Take(args, "--blocklist-after");
        if (blocklist is not null)
        {
            options.BlocklistThreshold = int.TryParse(blocklist, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
                ? n : throw new ArgumentException($"--blocklist-after must be a whole number, not '{blocklist}'");
        }

        NoLeftovers(args);
        options.Validate();

        var time = TimeProvider.System;
        var store = await Store.OpenAsync(options.DataDirectory, time).ConfigureAwait(false);
        store.BlocklistThreshold = options.BlocklistThreshold;
        await using (store.ConfigureAwait(false))
        {
            await WriteFirstTokensAsync(store, options.DataDirectory).ConfigureAwait(false);
            var builder = WebApplication.CreateSlimBuilder([]);
            builder.Logging.ClearProviders();
            builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            builder.Logging.SetMinimumLevel(LogLevel.Information);
            builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
            builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
            builder.Logging.AddFilter("Grpc", LogLevel.Warning);
            var tls = options.Listen.Scheme == "https";
            string? fingerprint = null;
            string? caPath = null;
            System.Security.Cryptography.X509Certificates.X509Certificate2? certificate = null;
            if (tls)
            {
                (certificate, fingerprint, caPath) = Certificates.LoadOrCreate(options.DataDirectory, options.Listen.Host);
            }

            builder.WebHost.ConfigureKestrel(kestrel =>
            {
                kestrel.Limits.MaxRequestBodySize = null;
                kestrel.Limits.Http2.MaxStreamsPerConnection = 1000;
                void Configure(ListenOptions listenOptions)
                {
                    listenOptions.Protocols = HttpProtocols.Http2;
                    if (certificate is not null)
                    {
                        listenOptions.UseHttps(certificate);
                    }
                }

                var host = options.Listen.Host.Trim('[', ']');
                if (host is "localhost")
                {
                    kestrel.ListenLocalhost(options.Listen.Port, Configure);
                }
                else if (host is "0.0.0.0" or "*" or "+")
                {
                    kestrel.ListenAnyIP(options.Listen.Port, Configure);
                }
                else if (IPAddress.TryParse(host, out var address))
                {
                    kestrel.Listen(address, options.Listen.Port, Configure);
                }
                else
                {
                    var addresses = Dns.GetHostAddresses(host);
                    foreach (var address2 in addresses.Where(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork))
                    {
                        kestrel.Listen(address2, options.Listen.Port, Configure);
                    }
                }
            });
            builder.Services.AddGrpc(grpc =>
            {
                grpc.MaxReceiveMessageSize = options.MaxMessageBytes;
                grpc.MaxSendMessageSize = options.MaxMessageBytes;
                grpc.EnableDetailedErrors = false;
            });
            builder.Services.AddSingleton(options);
            builder.Services.AddSingleton<TimeProvider>(time);
            builder.Services.AddSingleton(store);
            builder.Services.AddSingleton<Farm>();
            builder.Services.AddHostedService<LeaseReaper>();
            builder.Services.AddSingleton<BlobCollector>();
            builder.Services.AddHostedService(services => services.GetRequiredService<BlobCollector>());
            builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(5));
            var app = builder.Build();
            app.MapGrpcService<JobsService>();
            app.MapGrpcService<AgentsService>();
            app.MapGrpcService<BlobsService>();

            var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ReferenceFarm.Server");

            try
            {
                await app.StartAsync().ConfigureAwait(false);
            }
            catch (IOException ex)
            {
                // Most often the port is taken: one clear line, not a stack trace.
                await Console.Error.WriteLineAsync($"error: cannot listen on {options.Listen}: {ex.Message}").ConfigureAwait(false);
                return 1;
            }

            // The grace starts once agents can reach the server again, however long the start took.
            var running = await store.GrantRestartGraceAsync(options.RestartGrace).ConfigureAwait(false);
            if (running > 0)
            {
                Log.RestartGrace(logger, running, (long)options.RestartGrace.TotalMilliseconds);
            }

            app.Services.GetRequiredService<Farm>().Listening.TrySetResult();
            Log.Listening(logger, options.Listen.ToString(), options.DataDirectory);
            if (fingerprint is not null)
            {
                Console.WriteLine($"TLS on: CA certificate {caPath}, SHA-256 fingerprint {fingerprint}");
            }

            // One plain line the farm CLI and tests wait for.
            Console.WriteLine($"ReferenceFarm server ready on {options.Listen}");
            await app.WaitForShutdownAsync().ConfigureAwait(false);
        }

        return 0;
    }

    private static async Task WriteFirstTokensAsync(Store store, string data)
    {
        // First start: an admin client token and the agent token, readable by the owner only.
        if (!await store.HasTokenAsync("client").ConfigureAwait(false))
        {
            var token = await store.AddTokenAsync("admin", "client", admin: true).ConfigureAwait(false);
            Certificates.WritePrivate(Path.Combine(data, "client.token"), token + "\n");
        }

        if (!await store.HasTokenAsync("agent").ConfigureAwait(false))
        {
            var token = await store.AddTokenAsync("agent", "agent", admin: false).ConfigureAwait(false);
            Certificates.WritePrivate(Path.Combine(data, "agent.token"), token + "\n");
        }
    }
}
