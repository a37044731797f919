using IotDsd.Tests.Infrastructure;
using System.Reflection;
using System.Xml.Linq;

namespace IotDsd.Tests.Architecture;

/// <summary>
/// Dependencies point one way (README, "Project layout"): Contracts ← Core ← (Inference, Edge, Verifier); Messaging
/// knows Contracts only, and neither Core nor ONNX Runtime; Edge and Verifier never reference each other; no product
/// project references the CLI; Hosting (how a role runs as a service) knows Messaging and Contracts only. Checked twice: on the project references the .csproj files declare (what the build
/// may use) and on the assembly references the compiler wrote into each built assembly (what the code does use).
/// </summary>
public sealed class DependencyDirectionTests
{
    private const string Contracts = "IotDsd.Contracts";
    private const string Core = "IotDsd.Core";
    private const string Inference = "IotDsd.Inference";
    private const string Messaging = "IotDsd.Messaging";
    private const string Edge = "IotDsd.Edge";
    private const string Verifier = "IotDsd.Verifier";
    private const string Sim = "IotDsd.Sim";
    private const string Testbed = "IotDsd.Testbed";
    private const string Hosting = "IotDsd.Hosting";
    private const string Cli = "IotDsd.Cli";

    /// <summary>
    /// For every project under src/, the product projects it may reference, directly or through others. A project
    /// under src/ that is not listed fails the test: a new project states its place here.
    /// </summary>
    private static readonly Dictionary<string, string[]> Allowed = new(StringComparer.Ordinal)
    {
        [Contracts] = [],
        [Core] = [Contracts],
        [Inference] = [Contracts, Core],
        [Messaging] = [Contracts],
        [Edge] = [Contracts, Core, Inference, Messaging],
        [Verifier] = [Contracts, Core, Inference, Messaging],
        [Sim] = [Contracts, Core],
        // How a long-running role is hosted (layered settings, logging, systemd, health): it connects to a broker and
        // reports, and knows nothing of models or decoding.
        [Hosting] = [Contracts, Messaging],
        // What measures and stresses the system may use every library, never the executable.
        [Testbed] = [Contracts, Core, Inference, Messaging, Edge, Verifier, Sim],
        [Cli] = [Contracts, Core, Inference, Messaging, Edge, Verifier, Sim, Testbed, Hosting],
    };

    /// <summary>Outside packages (NuGet ids, which are also their assembly names) a project must not reach.</summary>
    private static readonly Dictionary<string, string[]> ForbiddenPackages = new(StringComparer.Ordinal)
    {
        [Contracts] = ["Microsoft.ML.OnnxRuntime", "MQTTnet"],
        [Core] = ["Microsoft.ML.OnnxRuntime", "MQTTnet"],
        [Messaging] = ["Microsoft.ML.OnnxRuntime", "Microsoft.ML.Tokenizers"],
        [Hosting] = ["Microsoft.ML.OnnxRuntime", "Microsoft.ML.Tokenizers"],
    };

    [Fact]
    public void ProjectReferences_PointOneWay()
    {
        var graph = ProjectGraph();
        Assert.All(graph.Keys, project => Assert.True(Allowed.ContainsKey(project),
            $"src/{project} has no place in the dependency rules of {nameof(DependencyDirectionTests)}: add it to {nameof(Allowed)}"));

        // Not vacuous: the parser sees the edges the layering is built on.
        Assert.Contains(Contracts, graph[Core]);
        Assert.Contains(Core, graph[Edge]);
        Assert.Contains(Messaging, graph[Verifier]);

        var violations = Violations(graph);
        Assert.True(violations.Count == 0, "project references break the dependency direction:\n" + string.Join('\n', violations));
    }

    [Fact]
    public void ProjectPackageReferences_StayOutOfLowerLayers()
    {
        var violations = new List<string>();
        foreach (var (project, forbidden) in ForbiddenPackages)
        {
            var packages = PackageReferences(project);
            violations.AddRange(packages.Where(p => forbidden.Any(f => p.StartsWith(f, StringComparison.OrdinalIgnoreCase)))
                .Select(p => $"{project} references package {p}"));
        }

        // Not vacuous: the parser sees the packages the layering keeps apart.
        Assert.Contains("MQTTnet", PackageReferences(Messaging));
        Assert.Contains("Microsoft.ML.OnnxRuntime", PackageReferences(Inference));
        Assert.True(violations.Count == 0, string.Join('\n', violations));
    }

    [Fact]
    public void CompiledAssemblyReferences_PointOneWay()
    {
        var projects = ProjectGraph().Keys.ToList();
        var names = projects.ToDictionary(p => AssemblyNameOf(p), p => p, StringComparer.OrdinalIgnoreCase);
        var graph = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var packages = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var project in projects)
        {
            var assembly = Load(AssemblyNameOf(project));
            var references = assembly.GetReferencedAssemblies().Select(r => r.Name!).ToList();
            graph[project] = references.Where(names.ContainsKey).Select(r => names[r]).ToHashSet(StringComparer.Ordinal);
            packages[project] = references.Where(r => !names.ContainsKey(r)).ToHashSet(StringComparer.OrdinalIgnoreCase);
        }

        // Not vacuous: the built assemblies use the lower layers they are meant to use.
        Assert.Contains(Contracts, graph[Core]);
        Assert.Contains(Core, graph[Edge]);
        Assert.Contains(Messaging, graph[Edge]);
        Assert.Contains(Messaging, graph[Verifier]);
        Assert.Contains(Core, graph[Inference]);
        Assert.Contains("MQTTnet", packages[Messaging]);
        Assert.Contains("Microsoft.ML.OnnxRuntime", packages[Inference]);

        var violations = Violations(graph);
        foreach (var (project, forbidden) in ForbiddenPackages)
        {
            violations.AddRange(packages[project].Where(p => forbidden.Any(f => p.StartsWith(f, StringComparison.OrdinalIgnoreCase)))
                .Select(p => $"{project} uses {p}"));
        }

        Assert.True(violations.Count == 0, "compiled assemblies break the dependency direction:\n" + string.Join('\n', violations));
    }

    /// <summary>Every reference, direct or reached through others, that the rules do not allow.</summary>
    private static List<string> Violations(Dictionary<string, HashSet<string>> graph)
    {
        var violations = new List<string>();
        foreach (var project in graph.Keys.Order(StringComparer.Ordinal))
        {
            var allowed = Allowed.TryGetValue(project, out var a) ? a : [];
            foreach (var (reached, path) in Reachable(graph, project))
            {
                if (!allowed.Contains(reached, StringComparer.Ordinal))
                {
                    violations.Add($"{project} → {reached}" + (path.Count > 2 ? $" (through {string.Join(" → ", path)})" : ""));
                }
            }
        }

        return violations;
    }

    private static IEnumerable<(string Project, List<string> Path)> Reachable(Dictionary<string, HashSet<string>> graph, string start)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal) { start };
        var queue = new Queue<List<string>>();
        queue.Enqueue([start]);
        while (queue.Count > 0)
        {
            var path = queue.Dequeue();
            foreach (var next in graph.GetValueOrDefault(path[^1]) ?? [])
            {
                if (seen.Add(next))
                {
                    var longer = new List<string>(path) { next };
                    yield return (next, longer);
                    queue.Enqueue(longer);
                }
            }
        }
    }

    /// <summary>The product projects under src/ and the product projects each one's .csproj references.</summary>
    private static Dictionary<string, HashSet<string>> ProjectGraph()
    {
        var src = Path.Combine(Repository.Root, "src");
        var graph = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateDirectories(src).SelectMany(d => Directory.EnumerateFiles(d, "*.csproj")))
        {
            var name = Path.GetFileNameWithoutExtension(file);
            graph[name] = XDocument.Load(file).Descendants("ProjectReference")
                .Select(e => Path.GetFileNameWithoutExtension((string?)e.Attribute("Include") ?? "").Trim())
                .Where(n => n.Length > 0)
                .ToHashSet(StringComparer.Ordinal);
        }

        Assert.True(graph.Count >= 8, $"found only {graph.Count} projects under {src}");
        return graph;
    }

    private static List<string> PackageReferences(string project) =>
        XDocument.Load(ProjectFile(project)).Descendants("PackageReference")
            .Select(e => (string?)e.Attribute("Include") ?? "").Where(n => n.Length > 0).ToList();

    private static string AssemblyNameOf(string project) =>
        XDocument.Load(ProjectFile(project)).Descendants("AssemblyName").Select(e => e.Value.Trim()).FirstOrDefault() ?? project;

    private static string ProjectFile(string project) => Path.Combine(Repository.Root, "src", project, project + ".csproj");

    private static Assembly Load(string name)
    {
        try
        {
            return Assembly.Load(new AssemblyName(name));
        }
        catch (FileNotFoundException e)
        {
            throw new InvalidOperationException(
                $"assembly {name} is not beside the tests: IotDsd.Tests must reference its project (directly or through the CLI)", e);
        }
    }
}
