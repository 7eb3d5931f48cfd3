using FarmApi;

[assembly: FarmPlugin(typeof(FutureFarm.FutureFarmPlugin), "Future Farm")]

namespace FutureFarm;

/// <summary>A plug-in for the next API major.</summary>
public sealed class FutureFarmPlugin : BaseFarmPlugin
{
    public override Task<string> SubmitAsync(ReadOnlyMemory<byte> job, CancellationToken cancellationToken) => Task.FromResult("future-1");
}
