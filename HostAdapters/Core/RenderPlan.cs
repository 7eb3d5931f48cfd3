using FarmApi;

namespace FarmPlugins.Hosts;

/// <summary>What a host adapter planned for one render: files to stage, hosts needed, outputs, and the tasks.</summary>
public sealed class RenderPlan
{
    private readonly Func<IReadOnlyDictionary<string, InstallationMetadata>, IReadOnlyList<TaskSpec>> _createTasks;

    /// <summary>Makes a plan.</summary>
    /// <param name="sceneRelativePath">Where the scene lands in the job folder.</param>
    /// <param name="files">Every file to stage (the scene first), with its relative path in the job folder.</param>
    /// <param name="hosts">Every host the tasks need (for <see cref="BaseFarmPlugin.GetInstallationMetadataAsync"/>).</param>
    /// <param name="frameOutputs">Each frame's final image, relative to the job folder (and to the output folder once fetched).</param>
    /// <param name="size">The image size the frames will have.</param>
    /// <param name="createTasks">Makes the tasks once the installations of <paramref name="hosts"/> are known.</param>
    public RenderPlan(
        string sceneRelativePath,
        IReadOnlyList<RenderFile> files,
        IReadOnlyList<string> hosts,
        IReadOnlyList<FrameOutput> frameOutputs,
        ImageSize size,
        Func<IReadOnlyDictionary<string, InstallationMetadata>, IReadOnlyList<TaskSpec>> createTasks)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(hosts);
        ArgumentNullException.ThrowIfNull(frameOutputs);
        ArgumentNullException.ThrowIfNull(createTasks);
        foreach (var file in files)
        {
            if (JobPaths.Check(file.RelativePath) is { } reason)
            {
                throw new ArgumentException($"files: {reason}.", nameof(files));
            }
        }

        SceneRelativePath = sceneRelativePath;
        Files = files;
        Hosts = hosts;
        FrameOutputs = frameOutputs;
        Size = size;
        _createTasks = createTasks;
    }

    /// <summary>Where the scene lands in the job folder.</summary>
    public string SceneRelativePath { get; }

    /// <summary>Every file to stage, the scene first.</summary>
    public IReadOnlyList<RenderFile> Files { get; }

    /// <summary>Every host the tasks need.</summary>
    public IReadOnlyList<string> Hosts { get; }

    /// <summary>Each frame's final image, in frame-list order.</summary>
    public IReadOnlyList<FrameOutput> FrameOutputs { get; }

    /// <summary>The relative paths of every frame's final image, in frame-list order.</summary>
    public IReadOnlyList<string> Outputs => [.. FrameOutputs.Select(o => o.Path)];

    /// <summary>The image size of the frames.</summary>
    public ImageSize Size { get; }

    /// <summary>Makes the tasks with the node-side executables of each host.</summary>
    /// <param name="installations">Installation metadata by host name; must hold every host of <see cref="Hosts"/>.</param>
    /// <returns>The tasks, in a dependency-respecting order.</returns>
    /// <exception cref="ArgumentException">A host of <see cref="Hosts"/> has no installation.</exception>
    public IReadOnlyList<TaskSpec> CreateTasks(IReadOnlyDictionary<string, InstallationMetadata> installations)
    {
        ArgumentNullException.ThrowIfNull(installations);
        var missing = Hosts.Where(h => !installations.ContainsKey(h)).ToList();
        if (missing.Count > 0)
        {
            throw new ArgumentException($"installations: no installation metadata for {string.Join(", ", missing)}.", nameof(installations));
        }

        return _createTasks(installations);
    }
}

/// <summary>One frame's final image.</summary>
/// <param name="Frame">The frame number.</param>
/// <param name="Path">Its path relative to the job folder.</param>
public sealed record FrameOutput(int Frame, string Path);
